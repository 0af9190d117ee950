"""Which envs ask the advisor at this vector step: interval, position change, policy entropy, subject to a cooldown.

A batched generate call costs far less per row than a call of its own, so the rules keep envs asking together:

* Interval queries run on one clock shared by all envs: every ``interval_bars`` vector steps ("a tick"), each env
  at least half an interval past its last query asks. An env knocked out of step (a new episode asks at once) rejoins
  at the next tick instead of running its own clock; per-env clocks drift apart as episodes end at different bars,
  and the interval batches shrink with them.
* When some env asks between ticks, envs at least half an interval past their last query join the same batch
  ("piggyback").

Pure numpy; the advice wrapper owns one :class:`QueryScheduler` and calls :meth:`QueryScheduler.due` once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    """

    interval_bars: int
    on_position_change: bool
    entropy_threshold: float
    cooldown_bars: int


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

    def due(self, sides: Sequence[str], episode_start: Sequence[bool]) -> list[str | None]:
        """Advance one bar and say which envs ask now.

        Args:
            sides: Each env's position side at the new decision bar ("flat", "long", "short").
            episode_start: Whether each env's observation starts a new episode.

        Returns:
            Per env, the trigger that fired (one of :data:`TRIGGERS`) or None.
        """
        rules = self.rules
        self.bar += 1
        self.bars_since_query += 1
        tick = self.bar > 1 and (self.bar - 1) % rules.interval_bars == 0
        half = max(rules.cooldown_bars + 1, (rules.interval_bars + 1) // 2)
        out: list[str | None] = []
        for i in range(self.n_envs):
            changed = self.last_side[i] is not None and sides[i] != self.last_side[i]
            self.last_side[i] = sides[i]
            if episode_start[i]:
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
                if out[i] is None and self.bars_since_query[i] >= half:
                    out[i] = TRIGGER_PIGGYBACK
        return out

    def mark_queried(self, env_ids: Sequence[int]) -> None:
        """Reset the bar counters of the envs that were just queried."""
        for i in env_ids:
            self.bars_since_query[i] = 0
            self.entropy[i] = 0.0
