"""Per-dataset lookup tables the env steps over, built once with numpy.

Scalars the step path reads every bar are Python lists (indexing a list and doing float arithmetic is several times
faster than on numpy scalars); the windowed features are one zero-padded float32 matrix whose window for bar ``t``
is a contiguous slice. Tables depend only on the arrays and a few config values and are shared (cached) between
envs built on the same :class:`~tradelab.marketdata.arrays.MarketArrays` object.

Calendar columns (minute of day, session id, each session's real close) are schedule data: knowing that bar ``t``
is the last of its session, that the session closes early at 13:15, or that the flatten time is near is not
look-ahead (the exchange publishes its calendar). Price-derived columns at ``t`` use bars ``<= t`` only.

The flatten and entry cut-off times are distances from the close (:mod:`tradelab.marketdata.clock`): with
``flatten_time 15:55`` and ``session_end 16:00`` a position is closed 5 minutes before each session's *real* close.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from tradelab.marketdata.arrays import MarketArrays
from tradelab.marketdata.clock import bar_close_ns, minutes_before_close, minutes_until, rule_point_ns

FORCED_NONE, FORCED_FLATTEN_TIME, FORCED_SESSION_END = 0, 1, 2
TREND_NAMES = ("flat", "up", "down")
VOLATILITY_NAMES = ("normal", "low", "high")
_TREND_DEADBAND_ATR = 0.05
_VOL_LOW, _VOL_HIGH = 0.8, 1.25


@dataclass(frozen=True, eq=False)
class BarTables:
    """Precomputed per-bar values (all sequences have length ``n`` except ``features_flat``).

    Attributes:
        n: Number of bars.
        open, high, low, close, atr: Prices and ATR as Python floats.
        features_flat: ``(window_bars - 1 + n) * n_features`` float32, zero-padded in front; the window of bar
            ``t`` is ``features_flat[t * n_features : (t + window_bars) * n_features]``.
        n_features: Features per bar.
        session: Session id per bar.
        forced_exit: At this bar's close an open position is flattened: 0 no, 1 flatten time, 2 session end.
        entry_window: Time, session and ATR allow an entry decided at this bar's close.
        minutes_to_flatten: Minutes from this bar's close to the session's flatten time (0 after it).
        minutes_to_close: Minutes from this bar's close to the session's real close (0 after it).
        trend, volatility: Indices into :data:`TREND_NAMES` / :data:`VOLATILITY_NAMES`.
        rsi, vwap_distance_atr, return_5_bars, return_30_bars: Context values (NaN replaced by 0).
        utc_seconds, utc_offset_minutes: Bar open time (UTC epoch seconds) and the New York UTC offset.
        iso_cache: ISO timestamps formatted so far, by bar index (filled lazily, shared by envs).
    """

    n: int
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    atr: list[float]
    features_flat: np.ndarray
    n_features: int
    session: list[int]
    forced_exit: list[int]
    entry_window: list[bool]
    minutes_to_flatten: list[int]
    minutes_to_close: list[int]
    trend: list[int]
    volatility: list[int]
    rsi: list[float]
    vwap_distance_atr: list[float]
    return_5_bars: list[float]
    return_30_bars: list[float]
    utc_seconds: list[int]
    utc_offset_minutes: list[int]
    iso_cache: dict[int, str] = field(default_factory=dict)


_CACHE: dict[tuple, BarTables] = {}


def get_tables(
    arrays: MarketArrays, *, window_bars: int, entry_cutoff: str, flatten_time: str, session_end: str
) -> BarTables:
    """Tables for ``arrays`` and these settings, built once and shared while ``arrays`` is alive."""
    key = (id(arrays), window_bars, entry_cutoff, flatten_time, session_end)
    tables = _CACHE.get(key)
    if tables is None:
        tables = build_tables(
            arrays, window_bars=window_bars, entry_cutoff=entry_cutoff, flatten_time=flatten_time,
            session_end=session_end,
        )
        _CACHE[key] = tables
        weakref.finalize(arrays, _CACHE.pop, key, None)
    return tables


def build_tables(
    arrays: MarketArrays, *, window_bars: int, entry_cutoff: str, flatten_time: str, session_end: str
) -> BarTables:
    """Compute every table from ``arrays`` (numpy only, vectorised)."""
    n = len(arrays)
    close = np.asarray(arrays.close, dtype=np.float64)
    atr = np.asarray(arrays.atr, dtype=np.float64)
    atr_ok = np.isfinite(atr) & (atr > 0)
    safe_atr = np.where(atr_ok, atr, 1.0)
    minute = np.asarray(arrays.minute_of_day, dtype=np.int64)
    session = np.asarray(arrays.session_id, dtype=np.int64)
    ts_ns = np.asarray(arrays.timestamps_ns, dtype=np.int64)
    closes_at = bar_close_ns(ts_ns)
    session_close = np.asarray(arrays.session_close_ns, dtype=np.int64)
    flatten_at = rule_point_ns(session_close, minutes_before_close(flatten_time, session_end))
    cutoff_at = rule_point_ns(session_close, minutes_before_close(entry_cutoff, session_end))

    last_of_session = np.ones(n, dtype=bool)
    last_of_session[:-1] = session[1:] != session[:-1]
    forced = np.where(
        closes_at >= flatten_at, FORCED_FLATTEN_TIME,
        np.where(last_of_session, FORCED_SESSION_END, FORCED_NONE),
    )
    entry_window = (closes_at < cutoff_at) & (forced == FORCED_NONE) & atr_ok

    spread = (np.asarray(arrays.ema_fast) - np.asarray(arrays.ema_slow)) / safe_atr
    trend = np.where(spread > _TREND_DEADBAND_ATR, 1, np.where(spread < -_TREND_DEADBAND_ATR, 2, 0))
    ratio = atr / np.where(np.asarray(arrays.atr_median) > 0, arrays.atr_median, np.nan)
    volatility = np.where(ratio < _VOL_LOW, 1, np.where(ratio > _VOL_HIGH, 2, 0))

    utc_minute = (ts_ns // 60_000_000_000) % 1440
    offset = (minute - utc_minute + 720) % 1440 - 720

    feats = np.asarray(arrays.features, dtype=np.float32)  # finite and clipped where they are computed
    n_features = feats.shape[1]
    padded = np.zeros((window_bars - 1 + n, n_features), dtype=np.float32)
    padded[window_bars - 1:] = feats

    return BarTables(
        n=n,
        open=np.asarray(arrays.open, dtype=np.float64).tolist(),
        high=np.asarray(arrays.high, dtype=np.float64).tolist(),
        low=np.asarray(arrays.low, dtype=np.float64).tolist(),
        close=close.tolist(),
        atr=np.where(atr_ok, atr, 0.0).tolist(),
        features_flat=padded.reshape(-1),
        n_features=n_features,
        session=session.tolist(),
        forced_exit=forced.tolist(),
        entry_window=entry_window.tolist(),
        minutes_to_flatten=minutes_until(flatten_at, ts_ns).tolist(),
        minutes_to_close=minutes_until(session_close, ts_ns).tolist(),
        trend=trend.tolist(),
        volatility=volatility.tolist(),
        rsi=_clean(np.asarray(arrays.rsi, dtype=np.float64)),
        vwap_distance_atr=_clean(np.where(atr_ok, (close - np.asarray(arrays.vwap)) / safe_atr, 0.0)),
        return_5_bars=_clean(_past_return(close, 5)),
        return_30_bars=_clean(_past_return(close, 30)),
        utc_seconds=(ts_ns // 1_000_000_000).tolist(),
        utc_offset_minutes=offset.tolist(),
    )


def _past_return(close: np.ndarray, lag_bars: int) -> np.ndarray:
    """``close[t] / close[max(t - lag, 0)] - 1``: uses bars <= t only."""
    ref = np.concatenate([np.full(min(lag_bars, len(close)), close[0] if len(close) else 1.0), close[:-lag_bars]])
    return close / ref[: len(close)] - 1.0


def _clean(values: np.ndarray) -> list[float]:
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).tolist()
