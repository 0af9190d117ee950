"""Market regimes per bar, classified from information at bar ``t``, and each agent's P&L broken down by them.

Classifier (all inputs are bars ``<= t``):

1. One-minute log returns are deseasonalised by the intraday volatility profile: the mean squared return in the
   same :data:`PROFILE_BUCKET_MINUTES`-minute slot of the day over the *previous* sessions only (the open and close
   are far noisier than midday; a slot rather than one minute keeps the profile steady after a few sessions).
2. ``vol_ratio``: the square root of an EWMA (span :data:`VOL_SPAN_BARS`) of the deseasonalised squared returns, so
   1.0 is the root-mean-square bar for that time of day (fat-tailed returns put the median bar below it).
3. ``vol_ratio > VOLATILE_RATIO`` is ``volatile``, ``< CALM_RATIO`` is ``calm``; in between the market is trending,
   ``trend_up`` or ``trend_down`` by the sign of the last :data:`TREND_LOOKBACK_BARS` bars' return.

Bars before the first complete session have no profile and are ``warmup``. The two thresholds were set on a
40-session synthetic NQ market (seed 7) and checked on another (seed 11): 66% and 63% of bars agree with the
generator's label there (Cohen's kappa 0.52 and 0.47; chance agreement is about 25%). Trend direction is the weak part: the
generator's trends drift a third of a daily volatility per session, invisible over a couple of hours of noise.
On the synthetic market the generator's own regime chain (``tradelab.marketdata.synth.regime_labels``) is the
ground truth, and agreement with it is reported (accuracy, Cohen's kappa and the confusion matrix, by scikit-learn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.marketdata.arrays import MarketArrays

REGIME_NAMES: tuple[str, ...] = ("calm", "trend_up", "trend_down", "volatile")
"""Regimes in the synthetic generator's order (its label ``i`` is ``REGIME_NAMES[i]``)."""

WARMUP = -1
"""Label of bars without enough history to classify."""

PROFILE_BUCKET_MINUTES = 15
"""Width of the time-of-day slots of the volatility profile."""

VOL_SPAN_BARS = 60
"""EWMA span of the deseasonalised squared returns."""

TREND_LOOKBACK_BARS = 120
"""Bars whose summed return gives the direction of a trend."""

VOLATILE_RATIO = 1.6
"""Deseasonalised volatility above this multiple of typical is ``volatile``."""

CALM_RATIO = 0.9
"""Deseasonalised volatility below this multiple of typical is ``calm``."""


def classify_regimes(close: np.ndarray, session_id: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    """Point-in-time regime label of every bar (index into :data:`REGIME_NAMES`, or :data:`WARMUP`).

    Args:
        close: Close prices.
        session_id: Session column (non-decreasing).
        minute_of_day: Minute of day of each bar.

    Returns:
        int64 labels; the label at ``t`` depends on bars ``<= t`` only.
    """
    import pandas as pd

    close = np.asarray(close, dtype=np.float64)
    n = close.size
    ret = np.zeros(n)
    if n > 1:
        ret[1:] = np.diff(np.log(np.maximum(close, 1e-12)))
    session = np.asarray(session_id, dtype=np.int64)
    ret[np.r_[True, session[1:] != session[:-1]]] = 0.0  # the overnight gap is not intraday volatility
    slot = np.asarray(minute_of_day, dtype=np.int64) // PROFILE_BUCKET_MINUTES
    frame = pd.DataFrame({"slot": slot, "session": session, "r2": ret**2})
    # Sum and count of squared returns in this slot over earlier sessions only (not the current session's bars).
    per_session = frame.groupby(["slot", "session"], sort=True)["r2"].agg(["sum", "count"])
    cumulative = per_session.groupby(level="slot").cumsum() - per_session
    prior = cumulative.reindex(pd.MultiIndex.from_arrays([slot, session]))
    prior_sum = prior["sum"].to_numpy(dtype=np.float64)
    prior_count = prior["count"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        profile = np.where(prior_count > 0, prior_sum / np.maximum(prior_count, 1), np.nan)
        scaled = np.where(profile > 0, ret**2 / profile, np.nan)
    ewma = pd.Series(scaled).ewm(span=VOL_SPAN_BARS, adjust=True, ignore_na=True).mean().to_numpy()
    vol_ratio = np.sqrt(ewma)
    trend = pd.Series(ret).rolling(TREND_LOOKBACK_BARS, min_periods=1).sum().to_numpy()
    labels = np.where(vol_ratio > VOLATILE_RATIO, 3,
                      np.where(vol_ratio < CALM_RATIO, 0, np.where(trend >= 0, 1, 2))).astype(np.int64)
    first_session = session[0] if n else 0
    labels[(session == first_session) | ~np.isfinite(vol_ratio)] = WARMUP
    return labels


def synthetic_regimes(root: str | Path, market: str, config: TradelabConfig, n_bars: int) -> np.ndarray | None:
    """The synthetic generator's regime label of every stored bar, or ``None`` when the bars are not synthetic.

    The chain is rebuilt from ``data_report.json``'s seed and days and checked against the per-regime bar counts
    the generator recorded; any mismatch (other data, another generator version) gives ``None``.
    """
    from tradelab.marketdata.store import read_report
    from tradelab.marketdata.synth import REGIMES, regime_labels
    from tradelab.markets import contract_spec

    report = read_report(root, market) or {}
    source = report.get("source") or {}
    if source.get("kind") != "synthetic" or "seed" not in source or "days" not in source:
        return None
    if [r[0] for r in REGIMES] != list(REGIME_NAMES):
        return None
    labels = regime_labels(contract_spec(config, market), market, days=int(source["days"]), seed=int(source["seed"]))
    counts = {name: int(c) for name, c in zip(REGIME_NAMES, np.bincount(labels, minlength=len(REGIME_NAMES)))}
    if labels.size != n_bars or counts != {k: int(v) for k, v in (source.get("regime_bars") or {}).items()}:
        return None
    return labels


def agreement(predicted: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Agreement of the point-in-time labels with the generator's, over bars the classifier labelled.

    Returns:
        ``bars``, ``accuracy``, ``cohen_kappa`` and ``confusion`` (rows: true regime, columns: classified, both in
        :data:`REGIME_NAMES` order).
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    mask = predicted != WARMUP
    pred, true = predicted[mask], truth[mask]
    if pred.size == 0:
        return {"bars": 0, "accuracy": None, "cohen_kappa": None, "confusion": None}
    labels = list(range(len(REGIME_NAMES)))
    kappa = float(cohen_kappa_score(true, pred, labels=labels))
    return {
        "bars": int(pred.size),
        "accuracy": float(np.mean(pred == true)),
        "cohen_kappa": kappa if np.isfinite(kappa) else None,
        "confusion": confusion_matrix(true, pred, labels=labels).tolist(),
    }


def regime_breakdown(trades: Sequence[Mapping[str, Any]], labels: np.ndarray, agents: Sequence[str],
                     seeds: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Each agent's trades grouped by the regime at their decision bar (the bar before the entry fill).

    Args:
        trades: Ledger rows (``agent``, ``entry_bar``, ``pnl_usd``, ``r_multiple``).
        labels: Regime label per bar (point-in-time or the generator's).
        agents: Agents to report, in order (agents without trades get zero rows).
        seeds: Evaluation seeds, to give P&L per seed.

    Returns:
        Agent -> regime -> ``trades``, ``net_pnl_usd`` (mean over seeds), ``wins`` and ``mean_r``;
        ``warmup`` appears only when a trade was decided there.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    names = {i: name for i, name in enumerate(REGIME_NAMES)} | {WARMUP: "warmup"}
    for agent in agents:
        rows: dict[str, dict[str, Any]] = {name: {"trades": 0, "net_pnl_usd": 0.0, "wins": 0, "r": []}
                                           for name in REGIME_NAMES}
        for trade in trades:
            if trade["agent"] != agent:
                continue
            name = names[int(labels[max(0, int(trade["entry_bar"]) - 1)])]
            row = rows.setdefault(name, {"trades": 0, "net_pnl_usd": 0.0, "wins": 0, "r": []})
            row["trades"] += 1
            row["net_pnl_usd"] += float(trade["pnl_usd"]) / max(1, seeds)
            row["wins"] += float(trade["pnl_usd"]) > 0
            row["r"].append(float(trade["r_multiple"]))
        out[agent] = {name: {"trades": row["trades"], "net_pnl_usd": row["net_pnl_usd"], "wins": row["wins"],
                             "mean_r": float(np.mean(row["r"])) if row["r"] else None}
                      for name, row in rows.items()}
    return out


def regime_report(arrays: MarketArrays, window: tuple[int, int], trades: Sequence[Mapping[str, Any]],
                  agents: Sequence[str], seeds: int, truth: np.ndarray | None) -> dict[str, Any]:
    """The report's ``regimes`` section.

    Args:
        arrays: Market arrays (close, session and minute columns).
        window: ``(start, end)`` bars the agreement is measured over (the holdout).
        trades: The ledger.
        agents: Agents in report order.
        seeds: Number of evaluation seeds.
        truth: The generator's labels, or ``None`` on imported data.
    """
    labels = classify_regimes(arrays.close, arrays.session_id, arrays.minute_of_day)
    start, end = window
    held = labels[start:end]
    section: dict[str, Any] = {
        "classifier": {"profile_bucket_minutes": PROFILE_BUCKET_MINUTES, "vol_span_bars": VOL_SPAN_BARS, "trend_lookback_bars": TREND_LOOKBACK_BARS,
                       "volatile_ratio": VOLATILE_RATIO, "calm_ratio": CALM_RATIO},
        "holdout_bars": {name: int(np.sum(held == i)) for i, name in enumerate(REGIME_NAMES)},
        "by_agent": regime_breakdown(trades, labels, agents, seeds),
        "ground_truth": None,
    }
    if truth is not None:
        section["ground_truth"] = {
            "source": "synthetic generator",
            "holdout_bars": {name: int(np.sum(truth[start:end] == i)) for i, name in enumerate(REGIME_NAMES)},
            "agreement": agreement(held, truth[start:end]),
            "by_agent": regime_breakdown(trades, truth, agents, seeds),
        }
    return section
