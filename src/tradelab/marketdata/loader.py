"""``load_market_arrays``: the stored bars plus cached features as :class:`MarketArrays`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import DataError
from tradelab.fileio import sha256_file
from tradelab.marketdata.arrays import MarketArrays
from tradelab.marketdata.features import FEATURE_NAMES, cache_key, compute_features, read_cached, write_cache
from tradelab.marketdata.sessions import minute_of_day, session_ids_from_close, session_minutes, utc_ns
from tradelab.marketdata.store import SESSION_COLUMNS, load_bars
from tradelab.markets import contract_spec
from tradelab.paths import Workspace

log = logging.getLogger(__name__)

ETH_MIN_SESSION_HOURS = 12
"""A session longer than this is a Globex (``eth``) session; regular hours are 6.5."""

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import TradelabConfig


def load_market_arrays(root: str | Path, market: str, config: "TradelabConfig") -> MarketArrays:
    """Numpy columns of ``market``'s bars and features, with the train/holdout split.

    Features are computed on first use and cached in ``data/<MKT>/features.parquet``; the cache is rebuilt when the
    bars (sha256, which covers their session columns), the ATR period or the feature formulas change. Sessions and
    their real closes come from the bars' ``session_open`` / ``session_close`` columns; a bar file written before
    those existed gets the contract's fixed regular hours on each ET date, as it always had.

    Raises:
        StageNotReady: The market has no bars (names ``data generate`` and ``data import``).
        DataError: The bar file is unreadable, unsorted, or too short to split.
    """
    ws = Workspace.at(root)
    bars = load_bars(root, market)
    spec = contract_spec(config, market)
    start_min, end_min = session_minutes(spec, market)
    ts = bars["timestamp"]
    ns = utc_ns(ts)
    if ns.size == 0 or np.any(np.diff(ns) <= 0):
        raise DataError(
            f"{ws.bars_path(market)}: timestamps are empty, unsorted or repeated; re-create the file with "
            f"`python main.py data import PATH --market {market}` or `data generate --market {market}`"
        )
    open_ns, close_ns = _session_bounds(bars, spec, market, ws.bars_path(market))
    sid = session_ids_from_close(close_ns)
    split_index = holdout_split(sid, config.env.holdout_fraction, ws.bars_path(market))  # refuse before any write
    minutes = minute_of_day(ts)
    rules = config.env.rules
    key = cache_key(sha256_file(ws.bars_path(market)), atr_period_bars=rules.atr_period_bars,
                    session_start_min=start_min, session_end_min=end_min)
    feats = read_cached(ws.features_path(market), key, len(bars))
    if feats is None:
        feats = compute_features(bars, sid, ns, open_ns, close_ns, atr_period_bars=rules.atr_period_bars)
        write_cache(ws.features_path(market), feats, key)
    matrix = np.ascontiguousarray(feats[[f"f_{name}" for name in FEATURE_NAMES]].to_numpy(dtype=np.float32))

    return MarketArrays(
        market=market,
        timestamps_ns=ns,
        minute_of_day=minutes.astype(np.int16),
        session_id=sid,
        open=_col(bars, "open"), high=_col(bars, "high"), low=_col(bars, "low"), close=_col(bars, "close"),
        volume=_col(bars, "volume"),
        atr=_col(feats, "atr"), ema_fast=_col(feats, "ema_fast"), ema_slow=_col(feats, "ema_slow"),
        rsi=_col(feats, "rsi"), vwap=_col(feats, "vwap"), atr_median=_col(feats, "atr_median"),
        features=matrix,
        feature_names=FEATURE_NAMES,
        split_index=split_index,
        session_open_ns=open_ns,
        session_close_ns=close_ns,
        session_kind=session_kind(open_ns, close_ns),
    )


def session_kind(open_ns: np.ndarray, close_ns: np.ndarray) -> str:
    """``eth`` when any session is longer than :data:`ETH_MIN_SESSION_HOURS`, else ``rth``."""
    longest = int(np.max(close_ns - open_ns)) if close_ns.size else 0
    return "eth" if longest > ETH_MIN_SESSION_HOURS * 3600 * 10**9 else "rth"


def _session_bounds(bars: "pd.DataFrame", spec: Any, market: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each bar's session open and close (UTC ns): the stored columns, or fixed regular hours for an old file."""
    if all(c in bars.columns for c in SESSION_COLUMNS):
        return utc_ns(bars["session_open"]), utc_ns(bars["session_close"])
    import pandas as pd

    log.warning("%s has no session columns (written by an earlier tradelab): sessions are %s-%s ET on each date; "
                "re-import or re-generate %s to use the exchange calendar", path, spec.session_start,
                spec.session_end, market)
    start_min, end_min = session_minutes(spec, market)
    day = bars["timestamp"].dt.tz_localize(None).dt.normalize()
    opens = (day + pd.to_timedelta(start_min, unit="m")).dt.tz_localize("America/New_York")
    closes = (day + pd.to_timedelta(end_min, unit="m")).dt.tz_localize("America/New_York")
    return utc_ns(opens), utc_ns(closes)


def _col(frame: "pd.DataFrame", name: str) -> np.ndarray:
    return np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64))


def holdout_split(session_id: np.ndarray, holdout_fraction: float, path: Path | str = "bars") -> int:
    """First holdout bar: ``int(n * (1 - holdout_fraction))`` moved forward to the next session start.

    When no session starts at or after that bar, the split moves back to the last session start instead, so the
    holdout is never empty and no session straddles the split.

    Raises:
        DataError: All bars are one session, which cannot be split.
    """
    n = int(session_id.size)
    raw = int(n * (1.0 - holdout_fraction))
    starts = np.flatnonzero(np.diff(session_id) != 0) + 1
    if starts.size == 0:
        raise DataError(
            f"{path}: all {n} bars belong to one session, so nothing can be held out: Stage 1 needs at least 2 "
            f"sessions, one or more to train on and one held out for evaluation (env.holdout_fraction "
            f"{holdout_fraction:g}); import or generate more (e.g. `python main.py data generate --days 30`)"
        )
    later = starts[starts >= raw]
    return int(later[0]) if later.size else int(starts[-1])
