"""Which envs ask the advisor at this vector step: interval, position change, policy entropy, subject to a cooldown.

A batched generate call costs far less per row than a call of its own, so the rules keep envs asking together:

* Interval queries run on one clock shared by all envs: every ``interval_bars`` vector steps ("a tick"), each env
  at least half an interval past its last query asks. An env knocked out of step (a new episode asks at once) rejoins
  at the next tick instead of running its own clock; per-env clocks drift apart as episodes end at different bars,
  and the interval batches shrink with them.
* When some env asks between ticks, envs at least half an interval past their last query join the same batch
  ("piggyback").
* Optional filters skip an env whose answer could not matter or is not wanted, whatever fired: a vetoed mask that
  allows one action only (the prior is uniform over a single action, so advice cannot move the policy), or, with
  ``only_when_entries_allowed``, any bar where neither BUY nor SELL is allowed. A skipped env neither asks nor
  piggybacks; its counter keeps running, so it asks when a trigger next fires at a bar the filters allow.

Pure numpy; the advice wrapper owns one :class:`QueryScheduler` and calls :meth:`QueryScheduler.due` once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tradelab import ACTION_IDS

TRIGGER_EPISODE_START = "episode_start"
TRIGGER_INTERVAL = "interval"
TRIGGER_POSITION = "position_change"
TRIGGER_ENTROPY = "entropy"
TRIGGER_PIGGYBACK = "piggyback"
TRIGGERS: tuple[str, ...] = (
    TRIGGER_EPISODE_START, TRIGGER_INTERVAL, TRIGGER_POSITION, TRIGGER_ENTROPY, TRIGGER_PIGGYBACK,
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
    """

    interval_bars: int
    on_position_change: bool
    entropy_threshold: float
    cooldown_bars: int
    skip_single_action: bool = False
    only_when_entries_allowed: bool = False

    def skips(self, mask: np.ndarray | None) -> bool:
        """Whether the filters rule out asking at a bar with this (vetoed) action mask; None: no mask known."""
        if mask is None:
            return False
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if self.skip_single_action and int(mask.sum()) <= 1:
            return True
        return self.only_when_entries_allowed and not (mask[_BUY] or mask[_SELL])


_BUY, _SELL = ACTION_IDS["BUY"], ACTION_IDS["SELL"]


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
