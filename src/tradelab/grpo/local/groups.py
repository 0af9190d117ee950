"""Which GRPO groups carry a learning signal, and DAPO-style dynamic sampling of the ones that do.

A group's advantages are ``(R - mean) / (std + eps)``: when every answer of a prompt scores the same, they are all 0
and the group teaches nothing (only the KL term moves the adapter). Once an advisor answers every prompt the same way
at the rollout temperature, most groups look like that and a step's update is noise. These helpers measure it per
step (the share of groups with zero reward variance, and the mean within-group reward std) and implement DAPO's
remedy (Yu et al. 2025, "DAPO", dynamic sampling): drop the zero-variance groups and draw more prompts until the
batch is full, up to a cap of sampling rounds.

numpy only; :mod:`tradelab.grpo.local.step` runs the rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ZERO_STD_ATOL = 1e-9
"""Rewards of a group that differ by no more than this are equal: the group's advantages are all 0."""


def group_reward_stds(rewards: Sequence[float], group_size: int) -> np.ndarray:
    """Sample std (ddof 1, as the advantages use) of each group's rewards, groups laid out one after another.

    Raises:
        ValueError: The rewards do not split into groups of ``group_size`` (at least 2).
    """
    values = np.asarray(rewards, dtype=np.float64)
    if group_size < 2 or values.size % group_size:
        raise ValueError(f"{values.size} rewards do not split into groups of {group_size} (need at least 2 each)")
    return values.reshape(-1, group_size).std(axis=1, ddof=1)


def has_signal(rewards: Sequence[float], group_size: int) -> np.ndarray:
    """Per group: True unless its rewards are provably equal (a NaN reward keeps its group, so the trainer's
    non-finite guard still sees it)."""
    values = np.asarray(rewards, dtype=np.float64).reshape(-1, group_size)
    return ~(np.ptp(values, axis=1) <= ZERO_STD_ATOL)


@dataclass
class GroupTally:
    """Groups seen in one step, over every sampling round.

    Attributes:
        sampled: Groups sampled.
        zero_variance: Sampled groups whose rewards were all equal.
        std_sum: Sum of the sampled groups' reward stds.
        kept: Groups the update trains on.
        rounds: Sampling rounds drawn.
        capped: The step stopped at the round cap with fewer groups than it wanted.
    """

    sampled: int = 0
    zero_variance: int = 0
    std_sum: float = 0.0
    kept: int = 0
    rounds: int = 0
    capped: bool = False

    def add(self, rewards: Sequence[float], group_size: int) -> np.ndarray:
        """Count one round's groups; returns which of them carry a signal."""
        stds = group_reward_stds(rewards, group_size)
        signal = has_signal(rewards, group_size)
        self.sampled += int(stds.size)
        self.zero_variance += int((~signal).sum())
        self.std_sum += float(stds.sum())
        self.rounds += 1
        return signal

    @property
    def zero_variance_share(self) -> float:
        """Share of the sampled groups that carried no signal (0 when none were sampled)."""
        return self.zero_variance / self.sampled if self.sampled else 0.0

    @property
    def reward_std_mean(self) -> float:
        """Mean within-group reward std over the sampled groups."""
        return self.std_sum / self.sampled if self.sampled else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """The step's ``groups`` metrics (TensorBoard ``groups/<name>``)."""
        return {"sampled": self.sampled, "zero_variance": self.zero_variance,
                "zero_variance_share": self.zero_variance_share, "reward_std_mean": self.reward_std_mean,
                "kept": self.kept, "rounds": self.rounds, "capped": int(self.capped)}


def pick_signal_groups(signal: np.ndarray, room: int) -> list[int]:
    """Indices of the first ``room`` groups that carry a signal, in sampling order."""
    return [int(i) for i in np.flatnonzero(signal)[:max(room, 0)]]


@dataclass
class RunGroupSignal:
    """Whole-run totals of the per-step group tallies, for the run's manifest record and its final event."""

    steps: int = 0
    sampled: int = 0
    zero_variance: int = 0
    std_sum: float = 0.0
    kept: int = 0
    rounds: int = 0
    capped_steps: int = 0
    empty_steps: int = 0
    first_share: float | None = None
    last_share: float | None = None

    def add(self, groups: Mapping[str, float | int]) -> None:
        """Fold in one step's ``groups`` metrics (:meth:`GroupTally.to_dict`)."""
        sampled = int(groups["sampled"])
        self.steps += 1
        self.sampled += sampled
        self.zero_variance += int(groups["zero_variance"])
        self.std_sum += float(groups["reward_std_mean"]) * sampled
        self.kept += int(groups["kept"])
        self.rounds += int(groups["rounds"])
        self.capped_steps += int(groups["capped"])
        self.empty_steps += int(int(groups["kept"]) == 0)
        if self.first_share is None:
            self.first_share = float(groups["zero_variance_share"])
        self.last_share = float(groups["zero_variance_share"])

    def to_dict(self) -> dict[str, float | int | None]:
        """``{steps, groups_sampled, zero_variance_share, ...}`` as stored in ``stage2.runs[].group_signal``."""
        return {
            "steps": self.steps, "groups_sampled": self.sampled, "groups_kept": self.kept,
            "zero_variance_share": self.zero_variance / self.sampled if self.sampled else None,
            "zero_variance_share_first_step": self.first_share, "zero_variance_share_last_step": self.last_share,
            "reward_std_mean": self.std_sum / self.sampled if self.sampled else None,
            "rounds_mean": self.rounds / self.steps if self.steps else None,
            "capped_steps": self.capped_steps, "steps_without_signal": self.empty_steps,
        }
