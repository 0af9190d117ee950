"""The order the train parquet's rows are written in, for engines that read it front to back.

verl and the SofT-GRPO fork draw each step's prompts as the next ``data.train_batch_size`` rows of the train file
(with ``data.shuffle=False``; shuffled, the order is theirs). Drawn at random, a step's few prompts follow the
split's lean and the luck of the draw, and a run can teach one side on every prompt though the split is even
(README, "Stage 2 on prompts that lean"). The local engine draws each step balanced between the two sides
(``grpo_local.optim.prompt_draw: sides_balanced``); this is the same draw for the external engines, fixed in the
file: ``soft_grpo.dataset.train_order: sides_balanced`` writes the rows so that every stretch of consecutive rows
holds as many BUY-won rows as SELL-won rows, the other rows (tied, a side blocked) spread through at their share.
The smaller side's rows are repeated (each full pass in a fresh seeded order) until it matches the larger, as the
local engine draws a small side with replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrainOrder:
    """How the train file's rows were ordered (``train_order`` in the dataset metadata and the manifest). The
    split's own sides (distinct rows) are its ``constant_answers``.

    Attributes:
        value: ``soft_grpo.dataset.train_order`` at export.
        rows: Rows written (with the repeats).
        repeated_rows: Rows written a second (or later) time to balance the sides.
        seed: Seed of the order (``soft_grpo.dataset.seed``); None in time order.
    """

    value: str
    rows: int
    repeated_rows: int
    seed: int | None

    def record(self) -> dict[str, Any]:
        """JSON form (dataset metadata, the manifest's ``stage2.dataset``)."""
        return asdict(self)


def time_order(n_rows: int) -> tuple[np.ndarray, TrainOrder]:
    """The rows as kept (time order)."""
    return np.arange(n_rows, dtype=np.int64), TrainOrder("time", n_rows, 0, None)


def _passes(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` of ``members``: whole passes, each in a fresh random order, the last one cut short."""
    passes = -(-count // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(passes)])[:count]


def sides_balanced_order(sides: Sequence[str | None], seed: int) -> tuple[np.ndarray, TrainOrder]:
    """Positions of the time-ordered rows to write, so that the sides stay balanced along the file.

    The BUY-won and SELL-won rows each fill ``max(n_buy, n_sell)`` slots (the smaller side in repeated passes), the
    others fill theirs once, every class in a seeded random order. Each class's slots are spread evenly along the
    file (slot ``j`` of ``n`` at ``(j + 0.5) / n``), so any run of ``k`` consecutive rows holds ``k`` times each
    class's share, within one row. Without a row of either side there is nothing to balance: every row once, in a
    seeded random order (the engine reads in order, and a time order would train on the market's drift).

    Args:
        sides: :func:`tradelab.grpo.baselines.hindsight_side` of each time-ordered train row.
        seed: Seed of the within-class orders.

    Returns:
        ``(positions, tally)``: indices into ``sides``, some repeated, and :class:`TrainOrder`.
    """
    rng = np.random.default_rng([seed, 11])
    labels = np.asarray([side if side in ("BUY", "SELL") else "" for side in sides], dtype=object)
    buy, sell, others = (np.flatnonzero(labels == label) for label in ("BUY", "SELL", ""))
    n = len(sides)
    if not len(buy) or not len(sell):
        return rng.permutation(n).astype(np.int64), TrainOrder("sides_balanced", n, 0, seed)
    per_side = max(len(buy), len(sell))
    classes = [_passes(buy, per_side, rng), _passes(sell, per_side, rng), rng.permutation(others)]
    slots = np.concatenate([(np.arange(len(c)) + 0.5) / len(c) for c in classes])
    rank = np.concatenate([np.full(len(c), i) for i, c in enumerate(classes)])
    positions = np.concatenate(classes).astype(np.int64)[np.lexsort((rank, slots))]
    return positions, TrainOrder("sides_balanced", len(positions), len(positions) - n, seed)
