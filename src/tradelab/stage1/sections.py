"""The manifest's ``data`` and ``stage1`` sections (ARCHITECTURE.md §11) as Stage 1 writes them."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tradelab.fileio import sha256_file
from tradelab.paths import Workspace

_NY = ZoneInfo("America/New_York")
log = logging.getLogger(__name__)

STAGE1_KEYS: tuple[str, ...] = (
    "status", "started_at", "completed_at", "test_mode", "total_timesteps", "seed", "config_hash", "git_sha",
    "versions", "model_checkpoint", "vecnormalize_path", "checkpoints_dir", "base_model", "lora_adapter_path",
    "adapter_sha256", "experience_path", "experience_samples", "experience_with_outcome", "llm_stats",
    "hybrid_stats", "prompts", "pid", "host", "model_sha256", "last_completed",
)
"""Every key of the ``stage1`` section, in the order of ARCHITECTURE.md §11, then the run's owner (pid, host: a
``running`` status whose process is gone is stale), the model's sha256 and, while a newer run is not completed,
the section of the last completed run (whose ``final.zip`` is still the one on disk)."""


def _iso_ny(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) / 1e9, tz=timezone.utc).astimezone(_NY).isoformat()


def data_section(root: str | Path, market: str, arrays: Any) -> dict[str, Any]:
    """``{bars_path, sha256, rows, start, end, train_end, holdout_start, origin}`` for the market's bar file.

    ``origin`` says which market the bars are (synthetic with its edge and generator version, or an import).
    """
    from tradelab.marketdata.store import market_origin

    bars = Workspace.at(root).bars_path(market)
    ts = arrays.timestamps_ns
    split = int(arrays.split_index)
    return {
        "bars_path": Workspace.at(root).record(bars),
        "sha256": sha256_file(bars),
        "rows": int(len(arrays)),
        "start": _iso_ny(ts[0]),
        "end": _iso_ny(ts[-1]),
        "train_end": _iso_ny(ts[split - 1]),
        "holdout_start": _iso_ny(ts[split]) if split < len(arrays) else None,
        "origin": market_origin(root, market),
    }


def count_experience(path: Path) -> tuple[int, int]:
    """``(records, records_with_outcome)`` in the experience JSONL (0, 0 when it does not exist).

    Malformed lines (a partial last line after a kill, a hand edit) are skipped and logged, never fatal: they must
    not block the next Stage 1 run; Stage 2's export skips and reports them the same way. Only the bytes appended
    since the last count are read (:mod:`tradelab.stage1.experience_count`), so a resume does not re-read the file.
    """
    from tradelab.stage1.experience_count import count_experience_file

    count = count_experience_file(path)
    return count.records, count.with_outcome


def stage1_section(**fields: Any) -> dict[str, Any]:
    """A complete ``stage1`` section: every key of :data:`STAGE1_KEYS` (missing ones are None)."""
    unknown = set(fields) - set(STAGE1_KEYS)
    if unknown:
        raise ValueError(f"unknown stage1 manifest keys {sorted(unknown)}")
    return {key: fields.get(key) for key in STAGE1_KEYS}
