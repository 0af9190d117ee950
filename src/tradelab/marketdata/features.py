"""Point-in-time indicators and observation features, computed once per dataset and cached.

Every value at bar ``t`` uses bars ``<= t`` only: EMAs and RSI are recursive (``ta``), ATR is Wilder's recursion,
rolling statistics are trailing windows, the VWAP restarts each session, and nothing is back-filled or centred.

Indicator columns never hold NaN; their warm-up is defined from the bars available so far: ATR is the running mean
of the true range until ``atr_period_bars`` bars exist, EMAs start at the first close, RSI is 50 (neutral) until
``ta`` has :data:`RSI_BARS` bars, the ATR median uses however many of its 390 bars exist. The ``f_*`` feature columns
are NaN during their own warm-up in the computation and stored as 0 (see :data:`FEATURE_NAMES`).

Cache: ``data/<MKT>/features.parquet`` carries, in its parquet metadata under ``tradelab``, the bars' sha256 and the
parameters it was computed with; any mismatch recomputes it.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.fileio import atomic_write_bytes
from tradelab.marketdata.clock import session_position

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

FEATURE_VERSION = 2
"""Bumped whenever a formula below changes; part of the cache key (2: ``session_frac`` runs to the real close)."""

EMA_FAST_BARS = 20
"""Fast EMA period (``ema_fast``)."""

EMA_SLOW_BARS = 50
"""Slow EMA period (``ema_slow``)."""

RSI_BARS = 14
"""RSI period."""

ATR_MEDIAN_BARS = 390
"""Trailing window of the ATR median (one regular session)."""

VOLUME_Z_BARS = 390
"""Trailing window of the volume z-score."""

VOLUME_Z_MIN_BARS = 30
"""Bars needed before the volume z-score is defined."""

RETURN_HORIZONS_BARS = (1, 5, 15)
"""Log-return horizons of the return features."""

FEATURE_CLIP = 10.0
"""Features are clipped to +-this after scaling, so a rare outlier cannot dominate a batch."""

INDICATOR_COLUMNS = ("atr", "ema_fast", "ema_slow", "rsi", "vwap", "atr_median")
"""Raw indicator columns (price units, RSI 0-100)."""

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_15",   # log return over k bars / (ATR/close * sqrt(k))
    "atr_close_x1000",            # ATR / close * 1000
    "atr_rel_log",                # log(ATR / trailing ATR median)
    "rsi_c",                      # RSI / 100 - 0.5
    "ema_fast_dist_atr",          # (close - EMA20) / ATR
    "ema_slow_dist_atr",          # (close - EMA50) / ATR
    "ema_spread_atr",             # (EMA20 - EMA50) / ATR
    "vwap_dist_atr",              # (close - session VWAP) / ATR
    "range_atr",                  # (high - low) / ATR
    "body_atr",                   # (close - open) / ATR
    "session_frac",               # time since the session open / its length to the real close - 0.5
    "volume_z",                   # z-score of log(1 + volume) over the trailing 390 bars
)
"""Observation feature names, in column order of ``MarketArrays.features``."""


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period_bars: int) -> np.ndarray:
    """Wilder ATR, equal to ``ta.volatility.AverageTrueRange`` from bar ``period_bars - 1`` on.

    Before that it is the running mean of the true range (``ta`` leaves zeros there).
    """
    import pandas as pd

    prev_close = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))
    atr = np.cumsum(true_range) / np.arange(1, true_range.size + 1)
    if true_range.size >= period_bars:
        # Wilder's recursion is an EWM with alpha 1/period seeded by the simple mean of the first period bars.
        seeded = true_range[period_bars - 1:].copy()
        seeded[0] = atr[period_bars - 1]
        atr[period_bars - 1:] = pd.Series(seeded).ewm(alpha=1.0 / period_bars, adjust=False).mean().to_numpy()
    return atr


def session_vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                 session_id: np.ndarray) -> np.ndarray:
    """Volume-weighted typical price since each session's first bar (typical price while no volume traded)."""
    typical = (high + low + close) / 3.0
    starts = np.flatnonzero(np.diff(session_id, prepend=session_id[:1] - 1) != 0)
    lengths = np.diff(np.append(starts, session_id.size))
    pv, v = np.cumsum(typical * volume), np.cumsum(volume)
    base_pv = np.repeat(np.concatenate([[0.0], pv[starts[1:] - 1]]), lengths)
    base_v = np.repeat(np.concatenate([[0.0], v[starts[1:] - 1]]), lengths)
    cum_v = v - base_v
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = (pv - base_pv) / cum_v
    return np.where(cum_v > 0, vwap, typical)


def compute_features(
    bars: "pd.DataFrame", session_id: np.ndarray, timestamps_ns: np.ndarray, session_open_ns: np.ndarray,
    session_close_ns: np.ndarray, *, atr_period_bars: int,
) -> "pd.DataFrame":
    """Indicator columns (:data:`INDICATOR_COLUMNS`) and float32 features ``f_<name>`` for every bar.

    Args:
        bars: Stored bars (open, high, low, close, volume), time-sorted.
        session_id: Session index per bar (non-decreasing).
        timestamps_ns: Bar open times (UTC ns).
        session_open_ns, session_close_ns: Each bar's session open and real close (UTC ns), from the calendar.
        atr_period_bars: Wilder ATR period.
    """
    import pandas as pd
    from ta.momentum import RSIIndicator
    from ta.trend import EMAIndicator

    o, h, lo, c, v = (bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
    close_s = pd.Series(c)
    out = pd.DataFrame(index=range(c.size))
    out["atr"] = wilder_atr(h, lo, c, atr_period_bars)
    for column, period in (("ema_fast", EMA_FAST_BARS), ("ema_slow", EMA_SLOW_BARS)):
        ema = EMAIndicator(close_s, window=period).ema_indicator()
        # ta's EMA is the adjust=False recursion from the first close, masked until `period` bars exist.
        out[column] = ema.fillna(close_s.ewm(span=period, adjust=False).mean()).to_numpy()
    out["rsi"] = RSIIndicator(close_s, window=RSI_BARS).rsi().fillna(50.0).to_numpy()
    out["vwap"] = session_vwap(h, lo, c, v, session_id)
    out["atr_median"] = pd.Series(out["atr"]).rolling(ATR_MEDIAN_BARS, min_periods=1).median().to_numpy()
    position = session_position(timestamps_ns, session_open_ns, session_close_ns)
    feats = _feature_matrix(out, o, h, lo, c, v, position)
    for i, name in enumerate(FEATURE_NAMES):
        out[f"f_{name}"] = feats[:, i]
    return out


def _feature_matrix(ind: "pd.DataFrame", o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                    v: np.ndarray, position: np.ndarray) -> np.ndarray:
    import pandas as pd

    atr = np.maximum(ind["atr"].to_numpy(), 1e-12)
    log_c = np.log(c)
    columns: list[np.ndarray] = []
    for k in RETURN_HORIZONS_BARS:
        ret = np.full(c.size, np.nan)
        ret[k:] = log_c[k:] - log_c[:-k]
        columns.append(ret / (atr / c * np.sqrt(k)))
    log_v = pd.Series(np.log1p(v))
    roll = log_v.rolling(VOLUME_Z_BARS, min_periods=VOLUME_Z_MIN_BARS)
    volume_z = ((log_v - roll.mean()) / roll.std()).to_numpy()
    columns += [
        atr / c * 1000.0,
        np.log(atr / np.maximum(ind["atr_median"].to_numpy(), 1e-12)),
        ind["rsi"].to_numpy() / 100.0 - 0.5,
        (c - ind["ema_fast"].to_numpy()) / atr,
        (c - ind["ema_slow"].to_numpy()) / atr,
        (ind["ema_fast"].to_numpy() - ind["ema_slow"].to_numpy()) / atr,
        (c - ind["vwap"].to_numpy()) / atr,
        (h - lo) / atr,
        (c - o) / atr,
        position - 0.5,
        volume_z,
    ]
    matrix = np.column_stack(columns)
    matrix = np.nan_to_num(matrix, nan=0.0, posinf=FEATURE_CLIP, neginf=-FEATURE_CLIP)
    return np.clip(matrix, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


def cache_key(bars_sha256: str, *, atr_period_bars: int, session_start_min: int,
              session_end_min: int) -> dict[str, Any]:
    """What a cached feature file must match to be reused."""
    return {
        "bars_sha256": bars_sha256,
        "feature_version": FEATURE_VERSION,
        "atr_period_bars": atr_period_bars,
        "session_start_min": session_start_min,
        "session_end_min": session_end_min,
        "feature_names": list(FEATURE_NAMES),
    }


def read_cached(path: Path, key: dict[str, Any], rows: int) -> "pd.DataFrame | None":
    """The cached features when ``path`` exists, matches ``key`` and has ``rows`` rows; else None."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        stored = json.loads(meta.get(b"tradelab", b"{}"))
        if stored != key:
            return None
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types; a damaged cache is rebuilt from the bars
        logger.warning("ignoring unreadable feature cache %s (%s); recomputing", path, exc)
        return None
    return table.to_pandas() if table.num_rows == rows else None


def write_cache(path: Path, frame: "pd.DataFrame", key: dict[str, Any]) -> None:
    """Write ``frame`` to ``path`` atomically with ``key`` in the parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"tradelab"] = json.dumps(key).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buffer, compression="zstd")
    atomic_write_bytes(path, buffer.getvalue())
