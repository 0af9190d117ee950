"""The manifest's ``data`` and ``stage1`` sections (ARCHITECTURE.md §11) as Stage 1 writes them; their shape is
declared in :mod:`tradelab.manifest_schema`."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tradelab.fileio import sha256_file
from tradelab.manifest_schema import STAGE1_KEYS, Stage1Section
from tradelab.paths import Workspace

_NY = ZoneInfo("America/New_York")
log = logging.getLogger(__name__)

__all__ = ["STAGE1_KEYS", "count_experience", "data_section", "stage1_section"]


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
    """``(records, records_with_outcome)`` in the experience JSONL that count (0, 0 when it does not exist).

    Malformed lines (a partial last line after a kill, a hand edit) are skipped and logged, never fatal: they must
    not block the next Stage 1 run; Stage 2's export skips and reports them the same way. Only the bytes appended
    since the last count are read (:mod:`tradelab.stage1.experience_count`), so a resume does not re-read the file.
    Records set aside (a replaced run's, :mod:`tradelab.setaside`) are not counted.
    """
    from tradelab.setaside import load_ledger
    from tradelab.stage1.experience_count import count_experience_file

    count = count_experience_file(path)
    aside, aside_with_outcome = load_ledger(path).totals()
    return count.records - aside, count.with_outcome - aside_with_outcome


def stage1_section(**fields: Any) -> dict[str, Any]:
    """A complete ``stage1`` section: every key of :data:`STAGE1_KEYS` (missing ones are None), checked against
    :class:`tradelab.manifest_schema.Stage1Section` before it is written.

    Raises:
        ValueError: A key the section does not declare, or a value of the wrong type.
    """
    unknown = set(fields) - set(STAGE1_KEYS)
    if unknown:
        raise ValueError(f"unknown stage1 manifest keys {sorted(unknown)}")
    section = {key: fields.get(key) for key in STAGE1_KEYS}
    Stage1Section.model_validate(section)  # a pydantic ValidationError is a ValueError naming the field
    return section
