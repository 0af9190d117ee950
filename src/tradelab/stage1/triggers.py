"""When envs ask the advisor and what they may do: query triggers, the shared-clock scheduler and the risk veto.

- Triggers: which envs ask at a vector step (interval, position change, policy entropy, flat bars where an entry is
  allowed, subject to a cooldown).
- Veto: account-state rules that remove new-entry actions from the action mask.

numpy only: :mod:`tradelab.stage1.advice` wires these into the VecEnv, and evaluation's agents reuse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.core import ACTION_IDS

ENTRY_ACTION_IDS: tuple[int, ...] = (ACTION_IDS["BUY"], ACTION_IDS["SELL"])
"""The actions the veto removes and the entries-only trigger filter looks for."""


TRIGGER_EPISODE_START = "episode_start"
TRIGGER_INTERVAL = "interval"
TRIGGER_POSITION = "position_change"
TRIGGER_ENTROPY = "entropy"
TRIGGER_PIGGYBACK = "piggyback"
TRIGGER_FLAT = "flat_entry"
TRIGGERS: tuple[str, ...] = (
    TRIGGER_EPISODE_START, TRIGGER_INTERVAL, TRIGGER_POSITION, TRIGGER_ENTROPY, TRIGGER_PIGGYBACK, TRIGGER_FLAT,
)


@dataclass(frozen=True)
class TriggerRules:
    """Query triggers (``stage1.query``).

    Attributes:
        interval_bars: Bars between ticks of the shared interval clock.
        on_position_change: Ask when the position side changed since the previous bar.
        entropy_threshold: Ask when the policy's own normalised entropy at this bar exceeds this.
        cooldown_bars: Never ask within this many bars of the env's last query (episode starts excepted).
        skip_single_action: Never ask while the (vetoed) mask allows a single action.
        only_when_entries_allowed: Ask only while BUY or SELL is allowed (flat, entries not vetoed).
        flat_entry_every_bars: While flat with BUY and SELL both allowed, ask whenever at least this many bars
            passed since the env's last query (0: off). These are the decisions the market's direction answers, and
            the ones refinement learns the entry cue from.
    """

    interval_bars: int
    on_position_change: bool
    entropy_threshold: float
    cooldown_bars: int
    skip_single_action: bool = False
    only_when_entries_allowed: bool = False
    flat_entry_every_bars: int = 0

    def flat_entry(self, mask: np.ndarray | None, bars_since_query: int) -> bool:
        """Whether the flat-entry trigger fires: both entries allowed and the env's last query long enough ago."""
        if not self.flat_entry_every_bars or mask is None:
            return False
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        return bool(mask[list(ENTRY_ACTION_IDS)].all()) and bars_since_query >= self.flat_entry_every_bars

    def skips(self, mask: np.ndarray | None) -> bool:
        """Whether the filters rule out asking at a bar with this (vetoed) action mask; None: no mask known."""
        if mask is None:
            return False
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if self.skip_single_action and int(mask.sum()) <= 1:
            return True
        return self.only_when_entries_allowed and not mask[list(ENTRY_ACTION_IDS)].any()


class QueryScheduler:
    """Per-env query state for ``n_envs`` envs.

    Args:
        n_envs: Number of envs in the vector env.
        rules: The trigger rules.
    """

    def __init__(self, n_envs: int, rules: TriggerRules) -> None:
        self.n_envs = n_envs
        self.rules = rules
        self.bar = 0
        self.bars_since_query = np.zeros(n_envs, dtype=np.int64)
        self.last_side: list[str | None] = [None] * n_envs
        self.entropy = np.zeros(n_envs, dtype=np.float64)

    def set_entropy(self, entropy: np.ndarray) -> None:
        """Record the policy's own normalised entropy at the current bar of each env (from the policy probe)."""
        self.entropy = np.asarray(entropy, dtype=np.float64).reshape(self.n_envs).copy()

    def due(self, sides: Sequence[str], episode_start: Sequence[bool],
            masks: np.ndarray | None = None) -> list[str | None]:
        """Advance one bar and say which envs ask now.

        Args:
            sides: Each env's position side at the new decision bar ("flat", "long", "short").
            episode_start: Whether each env's observation starts a new episode.
            masks: ``(n_envs, n_actions)`` vetoed action masks at the new bar, for the rules' filters (None: no
                filter applies).

        Returns:
            Per env, the trigger that fired (one of :data:`TRIGGERS`) or None.
        """
        rules = self.rules
        self.bar += 1
        self.bars_since_query += 1
        tick = self.bar > 1 and (self.bar - 1) % rules.interval_bars == 0
        half = max(rules.cooldown_bars + 1, (rules.interval_bars + 1) // 2)
        skipped = [rules.skips(None if masks is None else masks[i]) for i in range(self.n_envs)]
        out: list[str | None] = []
        for i in range(self.n_envs):
            changed = self.last_side[i] is not None and sides[i] != self.last_side[i]
            self.last_side[i] = sides[i]
            if skipped[i]:
                out.append(None)
            elif episode_start[i]:
                out.append(TRIGGER_EPISODE_START)
            elif self.bars_since_query[i] <= rules.cooldown_bars:
                out.append(None)
            elif tick and self.bars_since_query[i] >= half:
                out.append(TRIGGER_INTERVAL)
            elif rules.on_position_change and changed:
                out.append(TRIGGER_POSITION)
            elif self.entropy[i] > rules.entropy_threshold:
                out.append(TRIGGER_ENTROPY)
            elif rules.flat_entry(None if masks is None else masks[i], int(self.bars_since_query[i])):
                out.append(TRIGGER_FLAT)
            else:
                out.append(None)
        if any(t is not None for t in out):
            for i in range(self.n_envs):
                if out[i] is None and not skipped[i] and self.bars_since_query[i] >= half:
                    out[i] = TRIGGER_PIGGYBACK
        return out

    def mark_queried(self, env_ids: Sequence[int]) -> None:
        """Reset the bar counters of the envs that were just queried."""
        for i in env_ids:
            self.bars_since_query[i] = 0
            self.entropy[i] = 0.0



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
