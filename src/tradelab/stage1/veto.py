"""The risk veto: account-state rules that remove new-entry actions from the action mask.

The veto never replaces a sampled action; it shrinks the set the policy samples from, so the rollout buffer stores the
vetoed mask and PPO's update sees the same distribution. Pure Python + numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.core import ACTION_IDS

ENTRY_ACTION_IDS: tuple[int, ...] = (ACTION_IDS["BUY"], ACTION_IDS["SELL"])

VETO_LOSS_STREAK = "loss_streak"
VETO_DRAWDOWN = "drawdown_buffer"
VETO_DAILY_LOSS = "daily_loss"


@dataclass(frozen=True)
class VetoRules:
    """Thresholds (``stage1.veto``).

    Attributes:
        max_consecutive_losses: Entries are vetoed at or above this many losses in a row, for
            ``loss_streak_pause_bars`` bars after the latest loss (a win resets the streak).
        loss_streak_pause_bars: How long the loss-streak veto lasts after the latest loss of the streak.
        min_drawdown_buffer_usd: Entries are vetoed while the drawdown buffer is below this.
        daily_loss_stop_usd: Entries are vetoed once the session's realised P&L is at or below minus this.
    """

    max_consecutive_losses: int
    loss_streak_pause_bars: int
    min_drawdown_buffer_usd: float
    daily_loss_stop_usd: float

    @classmethod
    def from_config(cls, veto: Any) -> "VetoRules":
        """Build from a ``stage1.veto`` config section (or any object with the four attributes)."""
        return cls(int(veto.max_consecutive_losses), int(veto.loss_streak_pause_bars),
                   float(veto.min_drawdown_buffer_usd), float(veto.daily_loss_stop_usd))

    def reasons(self, account: Mapping[str, Any], bars_since_loss: int = 0) -> list[str]:
        """Which rules the account currently breaches (empty: no veto).

        Args:
            account: The context's account block.
            bars_since_loss: Bars since the loss streak last grew (see :class:`VetoTracker`).
        """
        found = []
        streak = int(account.get("consecutive_losses", 0)) >= self.max_consecutive_losses
        if streak and bars_since_loss < self.loss_streak_pause_bars:
            found.append(VETO_LOSS_STREAK)
        if float(account.get("drawdown_buffer", np.inf)) < self.min_drawdown_buffer_usd:
            found.append(VETO_DRAWDOWN)
        if float(account.get("daily_pnl", 0.0)) <= -self.daily_loss_stop_usd:
            found.append(VETO_DAILY_LOSS)
        return found

    def apply(self, mask: np.ndarray, context: Mapping[str, Any] | None, bars_since_loss: int = 0
              ) -> tuple[np.ndarray, list[str]]:
        """The env's mask with entries removed when a rule is breached and the position is flat.

        Args:
            mask: The env's boolean action mask.
            context: The env's market context at this bar (``account`` and ``position`` are read); None = no veto.
            bars_since_loss: Bars since the loss streak last grew.

        Returns:
            ``(mask, reasons)``: a new mask (HOLD always stays allowed) and the rules that fired while an entry was
            otherwise allowed (empty when nothing was removed).
        """
        out = np.asarray(mask, dtype=bool).copy()
        if context is None or (context.get("position") or {}).get("side", "flat") != "flat":
            return out, []
        reasons = self.reasons(context.get("account") or {}, bars_since_loss)
        if not reasons or not out[list(ENTRY_ACTION_IDS)].any():
            return out, []
        out[list(ENTRY_ACTION_IDS)] = False
        out[ACTION_IDS["HOLD"]] = True
        return out, reasons


class VetoTracker:
    """Applies :class:`VetoRules` to ``n_envs`` envs, tracking how long ago each env's loss streak grew.

    Args:
        n_envs: Number of envs.
        rules: The thresholds.
    """

    def __init__(self, n_envs: int, rules: VetoRules) -> None:
        self.rules = rules
        self.streak = [0] * n_envs
        self.bars_since_loss = [0] * n_envs

    def apply(self, i: int, mask: np.ndarray, context: Mapping[str, Any] | None, *, episode_start: bool
              ) -> tuple[np.ndarray, list[str]]:
        """Advance env ``i`` by one bar and return its vetoed mask and the rules that fired."""
        streak = int(((context or {}).get("account") or {}).get("consecutive_losses", 0))
        if episode_start or streak != self.streak[i]:
            self.bars_since_loss[i] = 0
        else:
            self.bars_since_loss[i] += 1
        self.streak[i] = streak
        return self.rules.apply(mask, context, self.bars_since_loss[i])
