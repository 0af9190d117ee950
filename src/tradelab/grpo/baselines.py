"""What a constant advisor scores on a Stage 2 split: the reward's lean before any learning.

GRPO compares answers within a group, so a split on which one side wins more often, or by more, can teach that side
to an advisor whose answers do not yet follow the cue. Before reading an advisor's drift as the model's, compare it
with the split's: the mean reward of answering BUY, SELL or HOLD on every row, and on how many rows BUY beat SELL (or
the reverse) in hindsight. Computed from the rows' ground truths
with the one reward (:func:`tradelab.core.reward.compute_score`), so the figures are what every engine would score.
The same hindsight sides let a validation figure discount a split's lean (:func:`sides_balanced_mean`), which is
how the local engine can choose the adapter it hands on (``grpo_local.run.hand_on_reward``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


def constant_answers(rows: Iterable[tuple[str, str]], sides: list[str | None] | None = None) -> ConstantAnswers:
    """Score every constant answer on ``rows``.

    Args:
        rows: ``(data_source, ground_truth)`` of each row, as the Stage 2 parquet stores them.
        sides: When given, each row's :func:`hindsight_side` is appended to it (from the same scores).

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
        side = _better_side(scores["BUY"], scores["SELL"])
        if sides is not None:
            sides.append(side)
        buy_better += side == "BUY"
        sell_better += side == "SELL"
        tied += side == TIED
    return ConstantAnswers(rows=n, mean_reward={a: round(t / n, 4) if n else 0.0 for a, t in totals.items()},
                           buy_better=buy_better, sell_better=sell_better, sides_tied=tied)


TIED = "tied"
""":func:`hindsight_side` of a row where BUY and SELL were both allowed and their outcomes were equal."""


def _better_side(buy: Mapping[str, Any], sell: Mapping[str, Any]) -> str | None:
    """BUY, SELL, :data:`TIED`, or None where either side was not allowed, from their scored constant answers."""
    if not (buy["action_valid"] and sell["action_valid"]):
        return None
    if buy["outcome_r"] == sell["outcome_r"]:
        return TIED
    return "BUY" if buy["outcome_r"] > sell["outcome_r"] else "SELL"


def hindsight_side(data_source: str, ground_truth: str) -> str | None:
    """The side that did better on one row in hindsight: BUY, SELL, :data:`TIED`, or None where either was blocked.

    Both sides are scored by the one reward at :data:`NEUTRAL_CONFIDENCE`, and their realised outcomes (R) compared.
    """
    buy, sell = (compute_score(data_source, constant_answer(action), ground_truth) for action in ("BUY", "SELL"))
    return _better_side(buy, sell)


def sides_balanced_mean(rewards: Sequence[float], sides: Sequence[str | None]) -> float:
    """Mean reward with the rows where BUY won in hindsight and those where SELL won given equal total weight.

    A split on which SELL won 9 times and BUY 4 pays a constant SELL for the split's lean, not for a cue; here the
    BUY rows and the SELL rows each weigh half of their joint count, so any constant side earns the mean of its
    rewards on the two kinds of rows. Other rows (tied, a side blocked) keep weight 1, and the weights sum to the row
    count. With no row of one side there is nothing to balance, and the plain mean is returned.

    Args:
        rewards: One reward per answer.
        sides: :func:`hindsight_side` of each answer's row, aligned with ``rewards``.

    Raises:
        ValueError: The two sequences differ in length, or are empty.
    """
    if len(rewards) != len(sides) or not rewards:
        raise ValueError(f"{len(rewards)} rewards for {len(sides)} sides; need the same, non-zero count")
    n_buy, n_sell = sides.count("BUY"), sides.count("SELL")
    weight = {"BUY": 1.0, "SELL": 1.0}
    if n_buy and n_sell:
        weight = {"BUY": (n_buy + n_sell) / (2 * n_buy), "SELL": (n_buy + n_sell) / (2 * n_sell)}
    total = math.fsum(reward * weight.get(side or "", 1.0) for reward, side in zip(rewards, sides))
    return total / len(rewards)


def split_constant_answers(path: str | Path, sides: list[str | None] | None = None) -> ConstantAnswers:
    """:func:`constant_answers` of one Stage 2 parquet file, streamed a batch at a time (``sides`` as there)."""
    return constant_answers(_rows(Path(path)), sides)


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
