"""PNG plots of a report: equity curves, drawdowns and advisor calibration (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tradelab.io import atomic_write_bytes

_STYLES = ("-", "--", "-.", ":")
"""Line styles cycled per agent, so agents with identical curves stay visible on top of each other."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _curve(daily_pnl_usd: Sequence[float]) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.asarray(daily_pnl_usd, dtype=np.float64))])


def plot_equity(daily_pnl_by_agent: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """Cumulative net P&L (USD) per evaluated day, one line per agent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, (name, pnl) in enumerate(daily_pnl_by_agent.items()):
        ax.plot(_curve(pnl), label=name, linewidth=1.4, linestyle=_STYLES[k % len(_STYLES)])
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(title=title, xlabel="evaluated day", ylabel="cumulative net P&L (USD)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_drawdown(daily_pnl_by_agent: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """Drawdown of cumulative net P&L from its running peak (USD), one line per agent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, (name, pnl) in enumerate(daily_pnl_by_agent.items()):
        curve = _curve(pnl)
        ax.plot(curve - np.maximum.accumulate(curve), label=name, linewidth=1.4, linestyle=_STYLES[k % len(_STYLES)])
    ax.set(title=title, xlabel="evaluated day", ylabel="drawdown (USD)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_calibration(tables: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str) -> Path:
    """Reliability diagram: hit frequency against stated confidence per bin, one line per advisor-using agent."""
    plt = _pyplot()
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    bins = max((len(table) for table in tables.values()), default=1) or 1
    width = 1.0 / bins / max(len(tables), 1)  # bars of the agents side by side inside each bin
    for k, (name, table) in enumerate(tables.items()):
        filled = [row for row in table if row["count"]]
        ax.plot([r["mean_confidence"] for r in filled], [r["hit_frequency"] for r in filled], marker="o", label=name)
        counts.bar([r["bin_low"] + k * width for r in table], [r["count"] for r in table], width=width,
                   align="edge", label=name)
    if not any(row["count"] for table in tables.values() for row in table):
        ax.text(0.5, 0.5, "no directional advice with a full forward window", ha="center", va="center")
    ax.set(title=title, ylabel="direction hit frequency", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    counts.set(xlabel="stated confidence", ylabel="advice")
    return _save(fig, path)
