"""Scoring decoded answers with the shared Stage 2 reward, plus the blocklist guard."""

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
        rewards: Score per answer (0.0 for blocklisted answers).
        formats: 1.0 when the answer was well formed, per answer.
        blocked: Answers zeroed by the blocklist.
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
    from tradelab.grpo.reward import compute_score

    return compute_score


def blocked(text: str, blocklist: Sequence[str]) -> bool:
    """True when any non-empty blocklist substring occurs in ``text``."""
    return any(item and item in text for item in blocklist)


def score_answers(
    rows: Sequence[PromptRow], texts: Sequence[str], blocklist: Sequence[str], reward_fn: RewardFn
) -> AnswerScores:
    """Score each answer against its row's ground truth; blocklisted answers get reward 0.

    Args:
        rows: The prompt row of each answer (repeated for a group).
        texts: Decoded answers, aligned with ``rows``.
        blocklist: Substrings that zero the reward.
        reward_fn: ``compute_score``-compatible callable returning at least ``score`` and ``format``.
    """
    rewards, formats, n_blocked = [], [], 0
    for row, text in zip(rows, texts, strict=True):
        result = reward_fn(row.data_source, text, row.ground_truth, extra_info=row.extra_info)
        formats.append(float(result["format"]))
        if blocked(text, blocklist):
            n_blocked += 1
            rewards.append(0.0)
        else:
            rewards.append(float(result["score"]))
    return AnswerScores(rewards=rewards, formats=formats, blocked=n_blocked)
