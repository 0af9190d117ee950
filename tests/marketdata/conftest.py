"""Hand-built market data files for the marketdata tests.

The Databento sample spans the March 2024 daylight-saving change (Sunday 2024-03-10): 09:30 ET is 14:30 UTC on
Friday 03-08 and 13:30 UTC from Monday 03-11. Two NQ outrights trade ten session minutes a day; NQM4 takes the
volume lead on 03-12 (a roll) and NQH4 leads again on 03-13 (must not roll back). Each day also has a calendar
spread, an ES row, and one bar before and one at the session end. One NQM4 row is duplicated and two rows are
swapped out of order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

# date -> (UTC hour of 09:30 ET, NQH4 volume per bar, NQM4 volume per bar)
DAYS = {
    "2024-03-08": (14, 100.0, 10.0),
    "2024-03-11": (13, 90.0, 30.0),
    "2024-03-12": (13, 20.0, 100.0),
    "2024-03-13": (13, 200.0, 50.0),
}
SESSION_BARS = 10
M4_PREMIUM = 150.0


def _bar(ts: pd.Timestamp, symbol: str, price: float, volume: float) -> dict:
    return {"ts_event": ts, "rtype": 33, "publisher_id": 1, "instrument_id": sum(map(ord, symbol)),
            "open": price, "high": price + 2.0, "low": price - 1.0, "close": price + 1.0, "volume": volume,
            "symbol": symbol}


def databento_rows() -> pd.DataFrame:
    """The sample as a frame with ``ts_event`` as tz-aware UTC timestamps, in file order."""
    rows: list[dict] = []
    for d, (hour, vol_h, vol_m) in DAYS.items():
        open_utc = pd.Timestamp(f"{d} {hour}:30", tz="UTC")
        for k in range(-1, SESSION_BARS):  # k = -1: a bar before the session (09:29 ET)
            ts = open_utc + pd.Timedelta(minutes=k)
            base = 18000.0 + 10.0 * list(DAYS).index(d) + k
            rows.append(_bar(ts, "NQH4", base, vol_h))
            rows.append(_bar(ts, "NQM4", base + M4_PREMIUM, vol_m))
        rows.append(_bar(open_utc, "NQH4-NQM4", M4_PREMIUM, 5.0))
        rows.append(_bar(open_utc, "ESH4", 5100.0, 500.0))
        rows.append(_bar(open_utc + pd.Timedelta(minutes=390), "NQH4", 18100.0, 1.0))  # 16:00 ET: outside
    frame = pd.DataFrame(rows)
    dup = frame[(frame["symbol"] == "NQM4") & (frame["ts_event"] == pd.Timestamp("2024-03-12 13:35", tz="UTC"))]
    frame = pd.concat([frame, dup], ignore_index=True)
    order = np.arange(len(frame))
    order[[5, 6]] = order[[6, 5]]
    return frame.iloc[order].reset_index(drop=True)


def to_databento_csv(frame: pd.DataFrame, path: Path, *, integer_ns: bool) -> Path:
    out = frame.copy()
    if integer_ns:
        out["ts_event"] = out["ts_event"].astype("datetime64[ns, UTC]").dt.tz_localize(None).astype("int64")
    else:
        out["ts_event"] = out["ts_event"].dt.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def sample() -> SimpleNamespace:
    """The sample's constants and builders (fixtures, so tests work under any pytest import mode)."""
    return SimpleNamespace(days=DAYS, session_bars=SESSION_BARS, m4_premium=M4_PREMIUM, rows=databento_rows,
                           to_csv=to_databento_csv, walk=walk_bars)


@pytest.fixture
def databento_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write the Databento sample as CSV (ISO or integer-ns ``ts_event``) and return its path."""

    def make(*, integer_ns: bool = False, name: str = "glbx-mdp3-20240308-20240313.ohlcv-1m.csv") -> Path:
        return to_databento_csv(databento_rows(), tmp_path / name, integer_ns=integer_ns)

    return make


def walk_bars(n: int, *, start: str = "2024-03-08 09:30", level: float = 4321.0, seed: int = 0) -> pd.DataFrame:
    """A one-minute random walk (naive ET open times, one session per 390 bars) with valid OHLC."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    open_ = np.concatenate([[level], close[:-1]])
    times = pd.date_range(start, periods=n, freq="min")
    return pd.DataFrame({
        "timestamp": times, "open": open_, "high": np.maximum(open_, close) * 1.0002,
        "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": rng.integers(1, 100, n).astype(float),
    })
