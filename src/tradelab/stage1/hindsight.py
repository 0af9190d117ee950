"""Labelled flat bars of the training split: entry decisions refinement can learn from without asking the advisor.

A Stage 1 run yields about one entry record (flat, BUY and SELL both allowed) per 40 steps, and the entry cue is
learned from the count of those records. The hindsight label of such a decision depends only on the market's bars,
not on the policy: :func:`tradelab.stage1.refine.hindsight_example` replays every allowed action over the bars after
the decision. So any flat bar of the training split can be labelled the same way. :class:`HindsightBars` draws such
bars (seeded), builds the prompt the advisor would see there and the forward window the label replays, and hands
them to a refinement as records of the experience shape (``advice`` empty: nobody answered them).

No look-ahead: the prompt comes from the env's market context at the bar (bars up to it); the forward window is used
only for the label and stops at the training split's end, so no label reaches the holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.core.tradesim import ENTRY_ACTIONS

POOL_FACTOR = 4
"""Candidate bars in a run's pool per labelled bar a refinement draws, so successive refinements see different bars."""

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.marketdata.arrays import MarketArrays


def flat_entry_contexts(env: Any, bars: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
    """``(bar, market_context)`` for each bar where a fresh episode starting there may open BUY and SELL.

    Args:
        env: A ``FuturesTradingEnv`` of the split the bars lie in.
        bars: Candidate decision bars (absolute indices inside the env's split).
    """
    usable = []
    for bar in bars:
        _, info = env.reset(options={"start_index": int(bar)})
        context = info["market_context"]
        if set(ENTRY_ACTIONS) <= set(context["allowed_actions"]):
            usable.append((int(bar), context))
    return usable


class HindsightBars:
    """A seeded pool of labelled flat bars of a market's training split.

    Args:
        root: Workspace root.
        market: Market name.
        config: The whole config (prompts, env rules, contract).
        arrays: The market arrays (``split_index`` is the training split's end).
        pool_bars: Candidate bars drawn once (the pool); each :meth:`draw` samples from the usable ones.
        seed: Seed of the candidate draw and of every later sample.
    """

    def __init__(self, root: Any, market: str, config: TradelabConfig, arrays: MarketArrays, *, pool_bars: int,
                 seed: int) -> None:
        from tradelab.env import make_env
        from tradelab.stage1.wiring import experience_terms

        self.market, self.config, self.seed = market, config, int(seed)
        end = int(arrays.split_index)
        self.slicer, self.contract, self.rules = experience_terms(market, config, arrays, end_index=end)
        env = make_env(market, root, split="train", seed=self.seed, config=config, arrays=arrays)
        first, _ = env.split_bounds
        last = end - config.env.forward_horizon_bars - 2  # a full forward window inside the training split
        rng = np.random.default_rng([self.seed, 11])
        candidates = np.arange(first, max(first, last))
        if candidates.size > pool_bars:
            candidates = np.sort(rng.choice(candidates, size=pool_bars, replace=False))
        self.pool = flat_entry_contexts(env, candidates.tolist())

    def __len__(self) -> int:
        return len(self.pool)

    def record(self, bar: int, context: dict[str, Any]) -> dict[str, Any]:
        """The experience-shaped record of one flat bar: prompt, context, forward window, contract and rules."""
        from tradelab.advisor.prompts import build_messages

        return {
            "market": self.market, "bar_index": int(bar), "timestamp": context["timestamp"],
            "prompt": build_messages(context, self.config), "advice": {}, "response": "",
            "allowed_actions": list(context["allowed_actions"]), "position": dict(context["position"]),
            "account": dict(context["account"]), "market_context": dict(context),
            "forward": self.slicer.forward(int(bar)), "contract": dict(self.contract),
            "rules": {**self.rules, "flatten_after_bars": self.slicer.flatten_after_bars(int(bar))},
            "outcome": None,
        }

    def draw(self, n: int, round_: int) -> list[dict[str, Any]]:
        """``n`` records sampled from the pool (without replacement while it allows), seeded by ``round_``."""
        if n <= 0 or not self.pool:
            return []
        rng = np.random.default_rng([self.seed, 13, int(round_)])
        picks = rng.choice(len(self.pool), size=n, replace=n > len(self.pool))
        return [self.record(*self.pool[int(i)]) for i in np.sort(picks)]


def run_pool(root: Any, market: str, config: TradelabConfig, arrays: MarketArrays, *, seed: int
             ) -> HindsightBars | None:
    """A Stage 1 run's pool: :data:`POOL_FACTOR` candidates per ``stage1.refinement.hindsight_bars``, or None when
    refinements add no labelled bars."""
    wanted = config.stage1.refinement.hindsight_bars
    if not wanted:
        return None
    return HindsightBars(root, market, config, arrays, pool_bars=POOL_FACTOR * wanted, seed=seed)
