"""What one agent did in one episode: the per-bar account path, trade events, actions and advice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradelab.evaluation.advisor_metrics import AdviceRecord


@dataclass
class EpisodeLog:
    """The record of one agent over one episode.

    Attributes:
        agent: Agent name.
        seed: Evaluation seed.
        episode: Episode number within the seed.
        start_index: The bar the episode was asked to start at.
        bars: Bar index of every state the agent saw (the reset state, then one per step).
        in_position: Whether a position was open in that state.
        equity_usd: Balance plus unrealised P&L in that state.
        actions: Action id taken at each decision (one fewer than ``bars``).
        events: Trade events (``entry``/``exit``) in order, each with its ``bar_index``.
        advice: Advice the agent received, with the action it took.
    """

    agent: str
    seed: int
    episode: int
    start_index: int
    bars: list[int] = field(default_factory=list)
    in_position: list[bool] = field(default_factory=list)
    equity_usd: list[float] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    advice: list[AdviceRecord] = field(default_factory=list)

    def record_state(self, info: dict[str, Any]) -> None:
        """Append the account state of an env ``info`` (after reset or a step)."""
        context = info["market_context"]
        position, account = context["position"], context["account"]
        self.bars.append(int(info["bar_index"]))
        self.in_position.append(position["side"] != "flat")
        self.equity_usd.append(float(account["balance"]) + float(position["unrealized_pnl"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(bars, in_position, equity_usd)`` as numpy arrays."""
        return (np.asarray(self.bars, dtype=np.int64), np.asarray(self.in_position, dtype=bool),
                np.asarray(self.equity_usd, dtype=np.float64))
