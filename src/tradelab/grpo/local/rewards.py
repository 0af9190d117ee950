"""Scoring decoded answers with the shared Stage 2 reward (which applies the dataset's blocklist itself)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tradelab.grpo.local.data import PromptRow

RewardFn = Callable[..., dict[str, Any]]


@dataclass
class AnswerScores:
    """Rewards of a batch of answers.

    Attributes:
        rewards: Score per answer (blocklisted answers score the reward's malformed penalty).
        formats: 1.0 when the answer was well formed, per answer.
        blocked: Answers the ground truth's blocklist caught.
    """

    rewards: list[float]
    formats: list[float]
    blocked: int

    @property
    def mean(self) -> float:
        return sum(self.rewards) / max(len(self.rewards), 1)

    @property
    def format_rate(self) -> float:
        return sum(self.formats) / max(len(self.formats), 1)


def default_reward() -> RewardFn:
    """The engine-independent reward :func:`tradelab.grpo.reward.compute_score`."""
    from tradelab.core.reward import compute_score

    return compute_score


def score_answers(rows: Sequence[PromptRow], texts: Sequence[str], reward_fn: RewardFn) -> AnswerScores:
    """Score each answer against its row's ground truth.

    Args:
        rows: The prompt row of each answer (repeated for a group).
        texts: Decoded answers, aligned with ``rows``.
        reward_fn: ``compute_score``-compatible callable returning at least ``score``, ``format`` and ``blocked``.
    """
    rewards, formats, n_blocked = [], [], 0
    for row, text in zip(rows, texts, strict=True):
        result = reward_fn(row.data_source, text, row.ground_truth, extra_info=row.extra_info)
        formats.append(float(result["format"]))
        n_blocked += int(result.get("blocked", 0.0) > 0.0)
        rewards.append(float(result["score"]))
    return AnswerScores(rewards=rewards, formats=formats, blocked=n_blocked)
