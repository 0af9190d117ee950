"""``generate_market``: the embedded default market, a seeded synthetic 1-minute session series.

Model, per session (the exchange calendar's regular sessions from :data:`START_DATE`: cash-market holidays have no
session, and an early close ends its session at the real close), for the contract spec's session hours:
    * A Markov regime chain over bars (:data:`REGIMES`): each regime has a drift and a volatility multiplier and
      lasts a geometric number of bars; on leaving, the next regime is drawn uniformly from the others.
    * Per-bar log returns: Student-t (5 d.o.f., unit variance) x bar volatility x regime multiplier x an intraday
      volatility smile (higher after the open and before the close, mean square 1), plus the regime drift.
      The bar volatility is ``synthetic_daily_vol / sqrt(bars per session)``.
    * An overnight gap before each session's first bar.
    * Prices are rounded to ``tick_size``; a bar opens at the previous close (within a session), high/low add a
      half-normal excursion beyond open/close, rounded outward to the tick grid.
    * Volume: a U-shaped intraday profile x log-normal noise x (1 + |standardised return|).
    * Optional planted edge (``edge`` > 0, the known-answer market): every bar after a session's first bar drifts by
      ``edge`` x its own volatility in the direction of the last :data:`EDGE_LOOKBACK_BARS`-bar log return as it
      stands at the previous bar's close. The cue at bar t is ``sign(log close[t] - log close[t - 5])``: it depends
      only on bars <= t, and it is exactly what the env's ``ret_5`` feature and the prompt's ``return_5_bars_pct``
      field show, so PPO and the advisor can both learn it. ``edge = 0`` draws the very same bars as generator
      version 1 (the null market): the edge consumes no random numbers.
All randomness comes from one ``numpy.random.Generator(PCG64(seed))``, so the same seed gives the same bars.

Early closes: the draws are made for every session's full regular hours, exactly as before the calendar, and the
bars at or after a session's real close are then left out. So every full session holds the very bars generator
version 2 drew for it (only the dates moved past the holidays), and an early-close session holds that draw's bars
up to its close; the next session opens from the regular-hours draw's last close plus its overnight gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import DataError
from tradelab.marketdata.calendar import MINUTE_NS, SessionTable, calendar_info, first_sessions
from tradelab.marketdata.parsing import ET
from tradelab.marketdata.sessions import from_utc_ns, gap_report, session_minutes, utc_ns
from tradelab.marketdata.store import write_market
from tradelab.markets import contract_spec, validate_market_name

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import ContractSpec, TradelabConfig

GENERATOR_VERSION = 3
"""Bumped whenever the model changes, so reports say which bars a seed produced (2: the planted ``edge``; 3: the
exchange calendar's dates and early closes)."""

EDGE_LOOKBACK_BARS = 5
"""Bars of the momentum cue the planted edge follows (the prompt's ``return_5_bars`` and the env's ``ret_5``)."""

MAX_EDGE = 1.0
"""Largest planted edge, in bar volatilities of drift per bar (beyond it the market is a deterministic trend)."""

START_DATE = "2024-01-02"
"""First synthetic session (a Tuesday); 50+ sessions cross the March daylight-saving change."""

REGIMES: tuple[tuple[str, float, float, float], ...] = (
    # name, drift per session in daily-vol units, volatility multiplier, mean duration in bars
    ("calm", 0.0, 0.7, 780.0),
    ("trend_up", 0.35, 1.0, 390.0),
    ("trend_down", -0.35, 1.1, 390.0),
    ("volatile", 0.0, 1.8, 195.0),
)
"""Markov regimes of the synthetic market."""

T_DOF = 5.0
"""Degrees of freedom of the Student-t return innovations (fat tails)."""

SMILE_OPEN, SMILE_CLOSE, SMILE_WIDTH = 1.6, 0.8, 0.08
"""Intraday volatility smile: extra vol at the open / close, decaying over this fraction of the session."""

OVERNIGHT_GAP_VOL = 0.3
"""Standard deviation of the overnight gap, as a fraction of the daily volatility."""

EXCURSION_VOL = 0.5
"""Scale of the high/low excursion beyond open/close, in bar volatilities."""

BASE_VOLUME = 1000.0
"""Mean contracts per bar at mid-session before noise."""

VOLUME_NOISE = 0.35
"""Log-normal sigma of per-bar volume noise."""


def generate_market(
    root: str | Path, market: str, config: "TradelabConfig", *, days: int, seed: int, edge: float = 0.0
) -> dict[str, Any]:
    """Generate ``days`` synthetic sessions for ``market`` and store them as its bars.

    Args:
        root: Workspace root.
        market: Market name (needs a contract spec: tick size, session, start price, daily vol).
        config: Loaded configuration.
        days: Number of weekday sessions (>= 1).
        seed: Seed; the same seed gives identical bars.
        edge: Planted momentum edge in bar volatilities per bar, in ``[0, MAX_EDGE]``; 0 is the null market.

    Returns:
        The data report as written to ``data/<MKT>/data_report.json``.

    Raises:
        DataError: ``days`` < 1, ``seed`` < 0 or ``edge`` outside ``[0, MAX_EDGE]``.
        ConfigError: Unknown market.
    """
    from tradelab.config import config_hash
    from tradelab.provenance import origin

    validate_market_name(market)
    if days < 1:
        raise DataError(f"--days {days}: the synthetic market needs at least 1 session; pass e.g. --days 252")
    if seed < 0:
        raise DataError(f"--seed {seed}: seeds must be >= 0; pass e.g. --seed 7")
    if not 0.0 <= edge <= MAX_EDGE:
        raise DataError(f"--edge {edge}: the planted edge must be in [0, {MAX_EDGE}]; pass e.g. --edge 0.15 "
                        "(0 = the null market)")
    spec = contract_spec(config, market)
    bars, regime_counts = synthesize_bars(spec, market, days=days, seed=seed, edge=edge)
    report = {
        "source": {
            "kind": "synthetic",
            "seed": seed,
            "days": days,
            "generator_version": GENERATOR_VERSION,
            "edge": float(edge),
            "edge_lookback_bars": EDGE_LOOKBACK_BARS,
            "start_date": START_DATE,
            "regime_bars": regime_counts,
        },
        "session": {"kind": "rth", "start": spec.session_start, "end": spec.session_end, "timezone": ET,
                    "calendar": calendar_info("rth")},
        "calendar": {"sessions": days, "early_closes": _sessions(spec, days).early_closes(),
                     "holidays_dropped": []},
        "gaps": gap_report(bars["timestamp"], utc_ns(bars["session_open"]), utc_ns(bars["session_close"])),
        "rolls": [],
        "repairs": [],
        "dropped": {},
        "origin": origin(config_hash(config), seed, profile=config.profile),
    }
    return write_market(root, market, bars, report)


def synthesize_bars(
    spec: "ContractSpec", market: str, *, days: int, seed: int, edge: float = 0.0
) -> tuple["pd.DataFrame", dict[str, int]]:
    """The synthetic bars (stored-bar columns) and the number of bars spent in each regime (``edge``: see above)."""
    import pandas as pd

    start_min, end_min = session_minutes(spec, market)
    per_day = end_min - start_min
    n = days * per_day
    rng = np.random.default_rng(seed)
    regime = _regime_path(rng, n)
    names, drift_days, vol_mult, _ = (np.array(col) for col in zip(*REGIMES))
    bar_vol = spec.synthetic_daily_vol / np.sqrt(per_day)
    frac = np.tile(np.arange(per_day) / per_day, days)
    smile = 1.0 + SMILE_OPEN * np.exp(-frac / SMILE_WIDTH) + SMILE_CLOSE * np.exp(-(1.0 - frac) / SMILE_WIDTH)
    smile /= np.sqrt(np.mean(smile[:per_day] ** 2))
    shocks = rng.standard_t(T_DOF, size=n) / np.sqrt(T_DOF / (T_DOF - 2.0))
    sigma = bar_vol * vol_mult[regime] * smile
    log_ret = shocks * sigma + drift_days[regime] * spec.synthetic_daily_vol / per_day
    first = np.arange(days) * per_day
    gaps = rng.normal(0.0, OVERNIGHT_GAP_VOL * spec.synthetic_daily_vol, size=days)
    log_ret[first] += gaps
    log_ret[0] = 0.0
    if edge > 0.0:
        log_ret = _plant_momentum(log_ret, sigma, first, edge)
    tick = spec.tick_size
    close = _price(np.maximum(np.round(spec.synthetic_start_price * np.exp(np.cumsum(log_ret)) / tick), 1), tick)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    prev_close = close[first[1:] - 1]
    open_[first[1:]] = _price(np.maximum(np.round(prev_close * np.exp(gaps[1:]) / tick), 1), tick)
    excursion = np.abs(rng.normal(0.0, 1.0, size=(2, n))) * EXCURSION_VOL * sigma * close
    high = _price(np.ceil((np.maximum(open_, close) + excursion[0]) / tick), tick)
    low = _price(np.maximum(np.floor((np.minimum(open_, close) - excursion[1]) / tick), 1), tick)
    volume_profile = 0.6 + 0.4 * smile**2
    noise = rng.lognormal(0.0, VOLUME_NOISE, size=n)
    volume = np.maximum(np.rint(BASE_VOLUME * volume_profile * noise * (1.0 + np.abs(shocks))), 1.0)
    table = _sessions(spec, days)
    stamps = _timestamps(table, per_day)
    keep = _before_close(stamps, table, per_day)
    session = np.repeat(np.arange(days), per_day)[keep]
    bars = pd.DataFrame({
        "timestamp": from_utc_ns(stamps[keep]),
        "open": open_[keep], "high": high[keep], "low": low[keep], "close": close[keep], "volume": volume[keep],
    })
    bars["symbol"] = spec.root_symbol
    bars["session_open"] = from_utc_ns(table.open_ns[session])
    bars["session_close"] = from_utc_ns(table.close_ns[session])
    counts = np.bincount(regime[keep], minlength=len(REGIMES))
    return bars, {str(name): int(c) for name, c in zip(names, counts)}


def _sessions(spec: "ContractSpec", days: int) -> SessionTable:
    """The first ``days`` regular sessions of the calendar from :data:`START_DATE`."""
    return first_sessions("rth", START_DATE, days, rth_start=spec.session_start, rth_end=spec.session_end)


def _before_close(stamps_ns: np.ndarray, table: SessionTable, per_day: int) -> np.ndarray:
    """Mask of the regular-hours grid's bars that open before their session's real close."""
    return stamps_ns < np.repeat(table.close_ns, per_day)


def _plant_momentum(log_ret: np.ndarray, sigma: np.ndarray, first: np.ndarray, edge: float) -> np.ndarray:
    """Add the planted drift: bar t+1 moves ``edge * sigma[t+1]`` along the sign of the 5-bar return at bar t.

    Sequential on purpose: the drift feeds into later cues exactly as a real momentum effect would, and every cue
    is read from log prices that already include all earlier drift (no look-ahead by construction).
    """
    out = log_ret.copy()
    session_open = np.zeros(len(out), dtype=bool)
    session_open[first] = True
    log_price = np.empty(len(out))
    level = 0.0
    lookback = EDGE_LOOKBACK_BARS
    for t in range(len(out)):
        if t > lookback and not session_open[t]:
            cue = log_price[t - 1] - log_price[t - 1 - lookback]
            if cue != 0.0:
                out[t] += edge * sigma[t] * (1.0 if cue > 0.0 else -1.0)
        level += out[t]
        log_price[t] = level
    return out


def regime_labels(spec: "ContractSpec", market: str, *, days: int, seed: int) -> np.ndarray:
    """The regime index (into :data:`REGIMES`) of every bar :func:`synthesize_bars` makes for these arguments.

    The regime chain is the generator's first draw, so it is rebuilt here without the prices (and with the same
    bars after early closes left out).
    """
    start_min, end_min = session_minutes(spec, market)
    per_day = end_min - start_min
    table = _sessions(spec, days)
    keep = _before_close(_timestamps(table, per_day), table, per_day)
    return _regime_path(np.random.default_rng(seed), days * per_day)[keep]


def _price(ticks: np.ndarray, tick: float) -> np.ndarray:
    """Whole ticks -> prices, rounded so 0.1-tick prices print as written (20001 x 0.1 -> 2000.1)."""
    return np.round(ticks * tick, 9)


def _regime_path(rng: np.random.Generator, n: int) -> np.ndarray:
    """Regime index per bar: geometric durations, uniform switch to another regime."""
    k = len(REGIMES)
    mean_bars = np.array([r[3] for r in REGIMES])
    labels: list[np.ndarray] = []
    total = 0
    current = int(rng.integers(k))
    while total < n:
        length = int(rng.geometric(1.0 / mean_bars[current]))
        labels.append(np.full(length, current, dtype=np.int64))
        total += length
        current = (current + 1 + int(rng.integers(k - 1))) % k
    return np.concatenate(labels)[:n]


def _timestamps(table: SessionTable, per_day: int) -> np.ndarray:
    """UTC nanoseconds of every regular-hours grid bar: ``per_day`` minutes from each session's open."""
    minutes = np.arange(per_day, dtype=np.int64) * MINUTE_NS
    return (table.open_ns[:, None] + minutes[None, :]).ravel()
