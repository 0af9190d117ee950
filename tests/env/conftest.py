"""Hand-built MarketArrays for env tests: exact OHLC, a chosen ATR and calendar, simple point-in-time features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from tradelab.marketdata.arrays import MarketArrays

_DAY_NS = 86_400 * 10**9
_BASE_UTC_NS = np.datetime64("2024-01-02T00:00", "ns").astype(np.int64)  # a winter date: New York = UTC-5


def build_arrays(
    opens: Sequence[float],
    highs: Sequence[float],
    lows: Sequence[float],
    closes: Sequence[float],
    *,
    atr: float | Sequence[float] = 2.0,
    minutes: Sequence[int] | None = None,
    sessions: Sequence[int] | None = None,
    start_minute: int = 570,
    split_index: int | None = None,
    market: str = "NQ",
    session_close_minute: int = 960,
) -> MarketArrays:
    """MarketArrays from explicit bars.

    Minutes default to consecutive 1-minute bars from ``start_minute`` (09:30), sessions to one session, each
    session open 09:30-``session_close_minute`` (16:00; 13:15 = 795 for an early close) ET. Features
    are three point-in-time columns (1-bar return, close minus EMA over ATR, minute of day scaled).
    """
    n = len(closes)
    o, h, l, c = (np.asarray(x, dtype=np.float64) for x in (opens, highs, lows, closes))
    minute = np.asarray(minutes if minutes is not None else start_minute + np.arange(n), dtype=np.int16)
    session = np.asarray(sessions if sessions is not None else np.zeros(n), dtype=np.int32)
    day_ns = _BASE_UTC_NS + session.astype(np.int64) * _DAY_NS
    ts = day_ns + (minute.astype(np.int64) + 300) * 60 * 10**9
    atr_arr = np.broadcast_to(np.asarray(atr, dtype=np.float64), (n,)).copy()
    ema = _ema(c, 20)
    prev = np.concatenate([c[:1], c[:-1]])
    features = np.stack([(c / prev - 1.0) * 100.0, (c - ema) / atr_arr, minute / 960.0], axis=1).astype(np.float32)
    return MarketArrays(
        market=market, timestamps_ns=ts, minute_of_day=minute, session_id=session, open=o, high=h, low=l,
        close=c, volume=np.full(n, 100.0), atr=atr_arr, ema_fast=ema, ema_slow=_ema(c, 50),
        rsi=np.full(n, 50.0), vwap=c.copy(), atr_median=atr_arr.copy(), features=features,
        feature_names=("ret_1", "ema_dist_atr", "minute"), split_index=split_index if split_index is not None else n,
        session_open_ns=day_ns + (570 + 300) * 60 * 10**9,
        session_close_ns=day_ns + (session_close_minute + 300) * 60 * 10**9,
    )


def random_walk_arrays(n_days: int, seed: int, *, bars_per_day: int = 390, split_fraction: float = 0.8) -> MarketArrays:
    """A seeded tick-rounded random walk of ``n_days`` regular sessions."""
    rng = np.random.default_rng(seed)
    n = n_days * bars_per_day
    close = np.round((18_000.0 + np.cumsum(rng.normal(0.0, 4.0, n))) / 0.25) * 0.25
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0.0, 2.0, (2, n))) / 0.25) * 0.25
    highs = np.maximum(opens, close) + wick[0]
    lows = np.minimum(opens, close) - wick[1]
    tr = highs - lows
    atr = np.convolve(tr, np.ones(14) / 14.0)[:n]
    atr[:13] = np.nan  # warm-up: no valid ATR, entries must be masked
    minutes = np.tile(570 + np.arange(bars_per_day), n_days)
    sessions = np.repeat(np.arange(n_days), bars_per_day)
    return build_arrays(opens, highs, lows, close, atr=atr, minutes=minutes, sessions=sessions,
                        split_index=int(n * split_fraction))


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


@pytest.fixture
def make_arrays() -> Callable[..., MarketArrays]:
    return build_arrays


@pytest.fixture(scope="session")
def walk_arrays() -> MarketArrays:
    """Ten random-walk sessions (seed 11), 80 % train."""
    return random_walk_arrays(10, 11)
