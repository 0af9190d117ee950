"""What a constant advisor scores on a Stage 2 split: the reward's lean before any learning.

GRPO compares answers within a group, so a split on which one side wins more often, or by more, can teach that side
to an advisor whose answers do not yet follow the cue. Before reading an advisor's drift as the model's, compare it
with the split's: the mean reward of answering BUY, SELL or HOLD on every row, and on how many rows BUY beat SELL (or
the reverse) in hindsight. Computed from the rows' ground truths
with the one reward (:func:`tradelab.core.reward.compute_score`), so the figures are what every engine would score.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tradelab.core.parse import format_advice
from tradelab.core.reward import compute_score

CONSTANT_ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")
"""The answers a constant advisor gives."""
NEUTRAL_CONFIDENCE = 0.5
"""The constant answers' confidence: the calibration term's midpoint, so it favours no action."""


@dataclass(frozen=True)
class ConstantAnswers:
    """A split scored as if one answer were given on every row.

    Attributes:
        rows: Rows scored.
        mean_reward: Mean reward of answering each of :data:`CONSTANT_ACTIONS` on every row (a disallowed answer
            scores the reward's ``invalid_score``).
        buy_better: Rows, among those where BUY and SELL were both allowed, where BUY's outcome (R) beat SELL's.
        sell_better: The same, SELL over BUY.
        sides_tied: Rows where both were allowed and their outcomes were equal.
    """

    rows: int
    mean_reward: dict[str, float]
    buy_better: int
    sell_better: int
    sides_tied: int

    def record(self) -> dict[str, Any]:
        """JSON form (metadata files, manifests, reports)."""
        return asdict(self)


def constant_answer(action: str) -> str:
    """The answer a constant advisor gives: ``action`` at :data:`NEUTRAL_CONFIDENCE`, in the contract's form."""
    return format_advice(action, NEUTRAL_CONFIDENCE, "constant")


def constant_answers(rows: Iterable[tuple[str, str]]) -> ConstantAnswers:
    """Score every constant answer on ``rows``.

    Args:
        rows: ``(data_source, ground_truth)`` of each row, as the Stage 2 parquet stores them.

    Raises:
        ValueError: A ground truth is not the object the dataset exporter writes (a dataset bug).
    """
    answers = {action: constant_answer(action) for action in CONSTANT_ACTIONS}
    totals = dict.fromkeys(CONSTANT_ACTIONS, 0.0)
    n = buy_better = sell_better = tied = 0
    for source, truth in rows:
        n += 1
        scores = {action: compute_score(source, answer, truth) for action, answer in answers.items()}
        for action, score in scores.items():
            totals[action] += score["score"]
        buy, sell = scores["BUY"], scores["SELL"]
        if buy["action_valid"] and sell["action_valid"]:
            buy_better += buy["outcome_r"] > sell["outcome_r"]
            sell_better += sell["outcome_r"] > buy["outcome_r"]
            tied += buy["outcome_r"] == sell["outcome_r"]
    return ConstantAnswers(rows=n, mean_reward={a: round(t / n, 4) if n else 0.0 for a, t in totals.items()},
                           buy_better=buy_better, sell_better=sell_better, sides_tied=tied)


def split_constant_answers(path: str | Path) -> ConstantAnswers:
    """:func:`constant_answers` of one Stage 2 parquet file, streamed a batch at a time."""
    return constant_answers(_rows(Path(path)))


def _rows(path: Path) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(str(path)).iter_batches(columns=["data_source", "reward_model"]):
        truths = [model["ground_truth"] for model in batch.column("reward_model").to_pylist()]
        yield from zip(batch.column("data_source").to_pylist(), truths)


def constant_answers_text(record: dict[str, Any]) -> str:
    """One line for a :meth:`ConstantAnswers.record`: the constant answers' mean rewards and the sides' hindsight."""
    rewards = ", ".join(f"{action} {reward:+.3f}" for action, reward in record["mean_reward"].items())
    return (f"{record['rows']} rows, a constant answer scores {rewards}; BUY beat SELL in hindsight on "
            f"{record['buy_better']}, SELL beat BUY on {record['sell_better']}, tied on {record['sides_tied']}")
