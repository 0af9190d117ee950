"""Validation and repair of a bar frame; every repair is returned as a report entry.

Rules (applied by :func:`repair_bars` in this order):
    * ``nan``: rows with a missing time or OHLCV value are dropped.
    * ``non_positive_price``: rows with any price <= 0 are dropped (no neighbour-based guess of the true price).
    * ``negative_volume``: rows with volume < 0 are dropped.
    * ``price_scale``: per price field, runs of bars off by a power of ten (x100, /100, also x10 and x1000) relative
      to their neighbours are rescaled. Detection uses only the series itself: a step of
      ``log10(p_t / p_{t-1})`` within 0.2 of a non-zero integer starts or ends a run; the scale level held by most
      bars is taken as correct. No price level is hard-coded.
    * ``high_below_low``: high and low are swapped (an export that switched the two columns keeps the bar).
    * ``bracket``: high is raised / low is lowered to enclose open and close.
Out-of-order rows are sorted and exact duplicate (symbol, time) rows dropped by :func:`sort_and_dedupe`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PRICES = ("open", "high", "low", "close")
"""Price columns."""

SCALE_TOLERANCE_LOG10 = 0.2
"""How close (in log10 units) a one-bar step must be to an integer to count as a scale break."""

MAX_SCALE_POWER = 3
"""Largest power of ten recognised as a scale break (x1000)."""

MAX_LISTED = 20
"""How many source rows / runs a repair entry lists."""


def _entry(kind: str, action: str, frame: "pd.DataFrame", mask: np.ndarray, **extra: Any) -> dict[str, Any]:
    rows = frame.loc[mask, "source_row"].to_numpy()[:MAX_LISTED]
    times = frame.loc[mask, "ts"].iloc[:5]
    return {
        "kind": kind,
        "action": action,
        "count": int(mask.sum()),
        "source_rows": [int(r) for r in rows],
        "timestamps": [None if str(t) == "NaT" else t.isoformat() for t in times],
        **extra,
    }


def drop_nan_rows(frame: "pd.DataFrame") -> tuple["pd.DataFrame", list[dict[str, Any]]]:
    """Drop rows with a missing time or OHLCV value."""
    mask = frame[["ts", *PRICES, "volume"]].isna().any(axis=1).to_numpy()
    if not mask.any():
        return frame, []
    return frame[~mask], [_entry("nan", "dropped rows with a missing time or OHLCV value", frame, mask)]


def sort_and_dedupe(frame: "pd.DataFrame") -> tuple["pd.DataFrame", list[dict[str, Any]], int]:
    """Sort by time (stable), report out-of-order rows, drop repeated (symbol, time) rows keeping the first.

    Returns:
        The frame, the repair entries, and the number of duplicates dropped.
    """
    import pandas as pd

    repairs: list[dict[str, Any]] = []
    ts = frame["ts"].array.asi8  # int64 ticks: comparing Timestamp objects row by row is far slower
    backwards = np.zeros(len(frame), dtype=bool)
    backwards[1:] = ts[1:] < ts[:-1]
    if backwards.any():
        repairs.append(_entry("out_of_order", "sorted rows by time (stable)", frame, backwards))
        frame = frame.sort_values("ts", kind="stable")
    codes, _ = pd.factorize(frame["symbol"])
    keys = pd.DataFrame({"symbol": codes, "ts": frame["ts"].array.asi8})
    dup = keys.duplicated(keep="first").to_numpy()
    if dup.any():
        repairs.append(_entry("duplicate", "dropped repeated (symbol, time) rows, kept the first", frame, dup))
        frame = frame[~dup]
    return frame, repairs, int(dup.sum())


def repair_bars(frame: "pd.DataFrame") -> tuple["pd.DataFrame", list[dict[str, Any]]]:
    """Apply the value repairs of this module (not NaN/sort/dedupe) to a time-sorted single series."""
    repairs: list[dict[str, Any]] = []
    for kind, action, rule in (
        ("non_positive_price", "dropped rows with a price <= 0", lambda f: (f[list(PRICES)] <= 0).any(axis=1)),
        ("negative_volume", "dropped rows with volume < 0", lambda f: f["volume"] < 0),
    ):
        mask = rule(frame).to_numpy()
        if mask.any():
            repairs.append(_entry(kind, action, frame, mask))
            frame = frame[~mask]
    frame = frame.copy()
    for step in (repair_price_scale, _swap_high_low, _extend_bracket):
        entry = step(frame)
        if entry is not None:
            repairs.append(entry)
    return frame, repairs


def scale_offsets(prices: np.ndarray) -> np.ndarray:
    """Power-of-ten offset of each price relative to the level most bars share (0 = correct scale)."""
    if prices.size < 2:
        return np.zeros(prices.size, dtype=np.int64)
    step = np.diff(np.log10(prices))
    power = np.rint(step)
    is_break = (power != 0) & (np.abs(step - power) < SCALE_TOLERANCE_LOG10) & (np.abs(power) <= MAX_SCALE_POWER)
    level = np.concatenate([[0], np.cumsum(np.where(is_break, power, 0))]).astype(np.int64)
    values, counts = np.unique(level, return_counts=True)
    return level - values[np.argmax(counts)]


def repair_price_scale(frame: "pd.DataFrame") -> dict[str, Any] | None:
    """Rescale runs of bars off by a power of ten, in place; return the repair entry or None."""
    offsets = {f: scale_offsets(frame[f].to_numpy(dtype=np.float64)) for f in PRICES}
    touched = np.zeros(len(frame), dtype=bool)
    for field, off in offsets.items():
        if off.any():
            frame[field] = frame[field].to_numpy() * 10.0 ** (-off)
            touched |= off != 0
    if not touched.any():
        return None
    first_off = np.zeros(len(frame), dtype=np.int64)
    for off in offsets.values():
        first_off = np.where(first_off == 0, off, first_off)
    return _entry(
        "price_scale",
        "rescaled runs of bars off by a power of ten relative to their neighbours",
        frame,
        touched,
        by_field={f: int((off != 0).sum()) for f, off in offsets.items()},
        runs=_runs(frame, touched, first_off),
    )


def _runs(frame: "pd.DataFrame", mask: np.ndarray, offsets: np.ndarray) -> list[dict[str, Any]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    rows, times = frame["source_row"].to_numpy(), frame["ts"]
    return [
        {
            "first_source_row": int(rows[a]),
            "last_source_row": int(rows[b - 1]),
            "start": times.iloc[a].isoformat(),
            "end": times.iloc[b - 1].isoformat(),
            "bars": int(b - a),
            "found_factor": float(10.0 ** int(offsets[a])),
        }
        for a, b in list(zip(starts, ends))[:MAX_LISTED]
    ]


def _swap_high_low(frame: "pd.DataFrame") -> dict[str, Any] | None:
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    mask = high < low
    if not mask.any():
        return None
    frame["high"], frame["low"] = np.where(mask, low, high), np.where(mask, high, low)
    return _entry("high_below_low", "swapped high and low", frame, mask)


def _extend_bracket(frame: "pd.DataFrame") -> dict[str, Any] | None:
    o, h, lo, c = (frame[f].to_numpy() for f in PRICES)
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    mask = (h < top) | (lo > bottom)
    if not mask.any():
        return None
    frame["high"], frame["low"] = np.maximum(h, top), np.minimum(lo, bottom)
    return _entry("bracket", "extended high/low to enclose open and close", frame, mask)
