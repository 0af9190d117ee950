"""The agents evaluation compares: baselines, advisor-alone, and the trained PPO / hybrid policies.

Every agent has the :class:`Agent` shape of ``tradelab.stage1.agent.HybridAgent``: ``reset()`` at each episode start
and ``act(obs, info, action_mask) -> (action_id, advice | None)``, where ``advice`` is a dict (``action``,
``action_id``, ``confidence``, ``parse_ok``) on the bars where an advisor answered. Baselines never look past the
decision bar: they read only the mask and ``info["market_context"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tradelab.core import ACTION_IDS

HOLD, BUY = ACTION_IDS["HOLD"], ACTION_IDS["BUY"]

AdviseFn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
"""Batched advice: market contexts in, one dict (``action_id``, ``confidence``, ``parse_ok``...) per context out."""


class Agent(Protocol):
    """What the runner drives."""

    def reset(self) -> None:
        """Called at every episode start."""

    def act(self, obs: Any, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, dict[str, Any] | None]:
        """The action id to take at this bar, and the advice behind it when an advisor answered."""


def position_side(info: dict[str, Any]) -> str:
    """``"flat"``, ``"long"`` or ``"short"`` from the env's market context."""
    return str(info["market_context"]["position"]["side"])


class FlatAgent:
    """Never trades: the zero line every other agent must beat after costs."""

    def reset(self) -> None:
        """Nothing to reset."""

    def act(self, obs: Any, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, None]:
        """Always HOLD."""
        return HOLD, None


class BuyAndHoldAgent:
    """Long one contract whenever the rules allow it.

    It buys at the first bar entries are allowed and buys again after any exit, so it is long for the whole session
    up to the entry cut-off; the env's rules still apply to it (protective stop and target, flatten before the close,
    no overnight position), which is what buy-and-hold means for a rule-bound intraday account.
    """

    def reset(self) -> None:
        """Nothing to reset."""

    def act(self, obs: Any, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, None]:
        """BUY when flat and allowed, else HOLD."""
        if position_side(info) == "flat" and action_mask[BUY]:
            return BUY, None
        return HOLD, None


class RandomAgent:
    """Uniformly random among the actions the mask allows, from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """The generator runs on across episodes so episodes differ but the whole run is reproducible."""

    def act(self, obs: Any, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, None]:
        """A random allowed action id."""
        allowed = np.flatnonzero(action_mask)
        return int(self._rng.choice(allowed)), None


class AdvisorAgent:
    """The advisor alone: its advice is executed when the mask allows it; HOLD when it does not or did not parse.

    Args:
        advise: Batched advice function (one context per call here).
        query_interval_bars: Ask every this many bars from the episode start; hold in between.
    """

    def __init__(self, advise: AdviseFn, query_interval_bars: int) -> None:
        if query_interval_bars < 1:
            raise ValueError(f"query_interval_bars must be >= 1, got {query_interval_bars}")
        self._advise = advise
        self._interval = query_interval_bars
        self._bar = 0

    def reset(self) -> None:
        """Restart the query schedule."""
        self._bar = 0

    def act(self, obs: Any, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, dict[str, Any] | None]:
        """Ask on schedule and follow the advice under the mask."""
        due = self._bar % self._interval == 0
        self._bar += 1
        if not due:
            return HOLD, None
        advice = self._advise([info["market_context"]])[0]
        action_id = advice.get("action_id")
        if advice.get("parse_ok") and action_id is not None and action_mask[int(action_id)]:
            return int(action_id), advice
        return HOLD, advice


def advice_to_dict(advice: Any) -> dict[str, Any]:
    """An ``Advice`` object (or dict) as the plain dict the runner records."""
    if isinstance(advice, dict):
        return advice
    return {name: getattr(advice, name, None) for name in ("action", "action_id", "confidence", "parse_ok", "error")}


BASELINES: dict[str, Callable[[int], Agent]] = {
    "flat": lambda seed: FlatAgent(),
    "buy_and_hold": lambda seed: BuyAndHoldAgent(),
    "random": lambda seed: RandomAgent(seed),
}
"""Baseline name -> factory taking the random seed."""
