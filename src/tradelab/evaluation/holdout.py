"""The holdout an evaluation runs on: the chronological split recorded in the manifest at Stage 1.

The bars file must be the one Stage 1 trained on (same SHA-256 and row count when the manifest records them). The
holdout starts at the manifest's ``data.holdout_start`` and runs to the last bar; the arrays handed to the env get
that bar as their ``split_index``, so the env's ``holdout`` split is exactly the recorded holdout even when
``env.holdout_fraction`` changed since.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from tradelab.errors import DataError, StageNotReady
from tradelab.evaluation.starts import Window
from tradelab.fileio import sha256_file
from tradelab.manifest import DataSection, data_of
from tradelab.marketdata.arrays import MarketArrays
from tradelab.paths import Workspace

LOCAL_TZ = ZoneInfo("America/New_York")
"""Zone assumed for a manifest timestamp written without an offset (the bars' exchange time)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp_ns(value: str, *, field: str, path: Path) -> int:
    """An ISO-8601 timestamp as UTC nanoseconds (no offset = America/New_York)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: {field} = {value!r} is not an ISO-8601 timestamp; re-run stage1 to rewrite it"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    delta = moment - _EPOCH  # integer arithmetic: a float timestamp can land a microsecond off the bar
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def check_bars_unchanged(root: str | Path, market: str, manifest: dict[str, Any], arrays: MarketArrays) -> None:
    """Raise when the bars differ from the ones Stage 1 recorded (the holdout would not be the trained one's)."""
    ws = Workspace.at(root)
    data = data_of(manifest) or DataSection()
    fix = f"re-run `python main.py stage1 --market {market}` on the current data, or restore the original bars"
    if data.rows is not None and data.rows != len(arrays):
        raise DataError(f"{ws.manifest_path(market)}: data.rows = {data.rows} but {ws.bars_path(market)} now has "
                        f"{len(arrays)} rows; {fix}")
    if data.sha256 and ws.bars_path(market).is_file() and sha256_file(ws.bars_path(market)) != data.sha256:
        raise DataError(f"{ws.manifest_path(market)}: data.sha256 does not match {ws.bars_path(market)}; {fix}")


def holdout_start_index(manifest: dict[str, Any], arrays: MarketArrays, path: Path) -> int:
    """First holdout bar from the manifest's ``data.holdout_start``, checked against ``data.train_end``.

    Raises:
        StageNotReady: The manifest records no holdout start.
        DataError: The holdout is empty or overlaps the recorded training range.
    """
    data = data_of(manifest) or DataSection()
    value = data.holdout_start
    if value is None:
        raise StageNotReady(f"{path}: data.holdout_start is missing; re-run stage1 so the manifest records its split")
    ts = arrays.timestamps_ns
    start = int(np.searchsorted(ts, timestamp_ns(value, field="data.holdout_start", path=path), side="left"))
    if not 0 < start < len(arrays) - 1:
        raise DataError(f"{path}: data.holdout_start = {value!r} leaves no holdout in {len(arrays)} bars; "
                        "generate or import more data and re-run stage1")
    train_end = data.train_end
    if train_end is not None:
        last_train = int(np.searchsorted(ts, timestamp_ns(train_end, field="data.train_end", path=path),
                                         side="right") - 1)
        if last_train >= start:
            raise DataError(f"{path}: data.train_end = {train_end!r} is not before data.holdout_start = {value!r}; "
                            "the holdout would overlap training bars. Re-run stage1")
    return start


def holdout_arrays(
    root: str | Path, market: str, manifest: dict[str, Any], arrays: MarketArrays
) -> tuple[MarketArrays, Window]:
    """The arrays with ``split_index`` at the recorded holdout start, and the holdout window."""
    check_bars_unchanged(root, market, manifest, arrays)
    start = holdout_start_index(manifest, arrays, Workspace.at(root).manifest_path(market))
    return dataclasses.replace(arrays, split_index=start), Window(0, start, len(arrays))


def bar_time(arrays: MarketArrays, index: int) -> str:
    """ISO timestamp (America/New_York) of a bar."""
    seconds = int(arrays.timestamps_ns[index]) / 1e9
    return datetime.fromtimestamp(seconds, tz=LOCAL_TZ).isoformat()
