"""Throughput of the Stage 2 reward (``tradelab.grpo.reward.compute_score``) on synthetic ground truths.

Builds 512 distinct ground-truth strings (flat and in-position, up/down/flat forward windows of 30 bars) and scores
8 answers per prompt, as a GRPO group would. Prints the cold (first sight of each ground truth) and warm rates;
the headline ``scores_per_s`` (last line) is the overall rate over the whole mixed run. ``--smoke`` scores 8 prompts
once (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import time

from tradelab.core.ground_truth import dumps
from tradelab.core.reward import _parsed, compute_score

ANSWERS = (
    "BUY | 0.80 | uptrend above VWAP",
    "SELL | 0.65 | momentum fading",
    "HOLD | 0.50 | no edge",
    "<think>trend is up, ATR normal</think>\nBUY | 0.70 | trend",
    "buy with confidence 75% because trend",
    '{"action": "SELL", "confidence": 0.6, "reason": "reversal"}',
    "I am not sure what to do.",
    "MOVE_TO_BE | 0.6 | lock in",
)
PROMPTS = 512
ROUNDS = 3


def _truth(i: int) -> str:
    step = (1.5, -1.5, 0.25)[i % 3]
    close = 18000.0 + (i % 97) * 0.25
    opens = [close + step * (k + 1) + 0.75 for k in range(30)]
    closes = [o + step / 2 for o in opens]
    in_position = i % 4 == 0
    position = ({"side": "long", "entry_price": close - 2.0, "stop": close - 8.0, "target": close + 10.0,
                 "trail_on": False, "bars_in_trade": 3} if in_position else None)
    allowed = ["HOLD", "MOVE_TO_BE", "ENABLE_TRAIL"] if in_position else ["HOLD", "BUY", "SELL"]
    return dumps({
        "v": 1, "market": "NQ", "timestamp": "2026-03-02T10:00:00-05:00",
        "forward": {"open": opens, "high": [max(o, c) + 0.75 for o, c in zip(opens, closes)],
                    "low": [min(o, c) - 0.75 for o, c in zip(opens, closes)], "close": closes, "atr": 4.0,
                    "horizon_bars": 30},
        "decision_close": close, "position": position, "allowed_actions": allowed,
        "contract": {"tick_size": 0.25, "tick_value": 5.0, "point_value": 20.0, "commission_per_side": 2.0,
                     "slippage_ticks": 1.0},
        "rules": {"stop_atr": 1.5, "target_r": 2.0, "trail_atr": 1.0, "be_buffer_ticks": 1.0},
        "flatten_after_bars": None, "outcome": None, "action_taken": "BUY",
        "advice": {"action": "BUY", "confidence": 0.7},
    })


def _run(truths: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    for truth in truths:
        for answer in ANSWERS:
            compute_score("tradelab/NQ", answer, truth)
            count += 1
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    prompts, rounds = (8, 1) if args.smoke else (PROMPTS, ROUNDS)
    truths = [_truth(i) for i in range(prompts)]
    _parsed.cache_clear()
    cold_n, cold_s = _run(truths)
    warm_n, warm_s = 0, 0.0
    for _ in range(rounds):
        n, s = _run(truths)
        warm_n, warm_s = warm_n + n, warm_s + s
    print(f"prompts={prompts} answers_per_prompt={len(ANSWERS)}")
    print(f"cold_scores_per_s={cold_n / cold_s:.0f}")
    print(f"warm_scores_per_s={warm_n / warm_s:.0f}")
    print(f"scores_per_s={(cold_n + warm_n) / (cold_s + warm_s):.0f}")


if __name__ == "__main__":
    main()
