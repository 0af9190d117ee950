"""Precomputed per-bar numpy arrays: what the env steps over and what contexts are built from.

Built once per dataset by :func:`tradelab.marketdata.load_market_arrays`; stepping never touches pandas. Every
column at index ``t`` depends only on bars ``<= t`` (point-in-time), except nothing: forward windows are sliced by
the consumers that are allowed to see them (rewards, labels, evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MarketArrays:
    """Column arrays of one market's bars, all of length ``n``.

    Attributes:
        market: Market name.
        timestamps_ns: Bar open times, int64 nanoseconds since the epoch (UTC).
        minute_of_day: Minutes since midnight America/New_York (int16), e.g. 570 = 09:30.
        session_id: Session index (int32, non-decreasing); a change marks a new session.
        open, high, low, close, volume: float64 OHLCV.
        atr: Wilder ATR in points (float64), period ``env.rules.atr_period_bars``.
        ema_fast, ema_slow: EMA(20) and EMA(50) of close (float64).
        rsi: RSI(14), 0-100 (float64).
        vwap: Session VWAP (float64), reset at each session start.
        atr_median: Rolling median of ATR over the last 390 bars (float64), for the volatility regime.
        features: Observation features, float32 of shape (n, F), roughly unit-scaled and stationary; finite and
            within +-:data:`tradelab.marketdata.features.FEATURE_CLIP` (the env uses them as they are).
        feature_names: The F feature column names.
        split_index: First holdout bar; bars ``[0, split_index)`` are training bars.
        session_open_ns, session_close_ns: Each bar's session open and real close (int64 UTC nanoseconds) from the
            exchange calendar: an early close or holiday halt is the session's close. Schedule data, not look-ahead.
        session_kind: ``"rth"`` (regular hours) or ``"eth"`` (the full Globex session).
    """

    market: str
    timestamps_ns: np.ndarray
    minute_of_day: np.ndarray
    session_id: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    atr: np.ndarray
    ema_fast: np.ndarray
    ema_slow: np.ndarray
    rsi: np.ndarray
    vwap: np.ndarray
    atr_median: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    split_index: int
    session_open_ns: np.ndarray
    session_close_ns: np.ndarray
    session_kind: str = "rth"

    def __len__(self) -> int:
        return int(self.close.shape[0])
