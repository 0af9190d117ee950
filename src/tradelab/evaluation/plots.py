"""PNG plots of a report: equity curves, drawdowns and advisor calibration (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tradelab.fileio import atomic_write_bytes

_STYLES = ("-", "--", "-.", ":")
"""Line styles cycled per agent, so agents with identical curves stay visible on top of each other."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


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


EquityPath = tuple[Sequence[int], Sequence[float]]
"""One episode's ``(bar indices, equity in USD)`` at every bar the agent saw."""


def bar_curves(paths: Sequence[EquityPath], starting_balance_usd: float) -> tuple[np.ndarray, np.ndarray]:
    """Episodes joined into one cumulative P&L curve at bar resolution.

    Each episode starts from the starting balance, so its P&L is ``equity - starting_balance``; episode ``k`` is
    shifted up by where episode ``k-1`` ended.

    Returns:
        ``(bar_index, cumulative_pnl_usd)`` of every recorded bar, episodes in the given order.
    """
    bars: list[np.ndarray] = []
    curve: list[np.ndarray] = []
    offset = 0.0
    for episode_bars, equity in paths:
        pnl = np.asarray(equity, dtype=np.float64) - starting_balance_usd + offset
        bars.append(np.asarray(episode_bars, dtype=np.int64))
        curve.append(pnl)
        offset = float(pnl[-1]) if pnl.size else offset
    if not bars:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(bars), np.concatenate(curve)


def session_starts(bars: np.ndarray, session_id: np.ndarray) -> np.ndarray:
    """Positions in ``bars`` where a new session (or a jump to another session) begins, the first included."""
    if bars.size == 0:
        return np.zeros(0, dtype=np.int64)
    sessions = session_id[bars]
    return np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])


def plot_equity_drawdown_bars(
    paths_by_agent: Mapping[str, Sequence[EquityPath]], session_id: np.ndarray, session_labels: Sequence[str],
    starting_balance_usd: float, path: Path, title: str,
) -> Path:
    """Cumulative net P&L and its drawdown at every evaluated bar, session boundaries as dotted lines.

    Args:
        paths_by_agent: Agent -> its episodes' ``(bars, equity)``; every agent traded the same bars.
        session_id: The market's session column.
        session_labels: Label (a date) of each session id.
        starting_balance_usd: Episode starting balance.
        path: PNG to write.
        title: Figure title.
    """
    plt = _pyplot()
    fig, (ax, dd) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    starts = np.zeros(0, dtype=np.int64)
    first_bars = np.zeros(0, dtype=np.int64)
    for k, (name, paths) in enumerate(paths_by_agent.items()):
        bars, curve = bar_curves(paths, starting_balance_usd)
        x = np.arange(curve.size)
        style = _STYLES[k % len(_STYLES)]
        ax.plot(x, curve, label=name, linewidth=1.1, linestyle=style)
        dd.plot(x, curve - np.maximum.accumulate(np.r_[0.0, curve])[1:], linewidth=1.0, linestyle=style)
        if k == 0:
            starts, first_bars = session_starts(bars, session_id), bars
    for a in (ax, dd):
        for s in starts[1:]:
            a.axvline(s - 0.5, color="grey", linestyle=":", linewidth=0.8)
    every = max(1, int(np.ceil(starts.size / 10)))  # at most ~10 date labels
    for s in starts[::every]:
        ax.annotate(session_labels[int(session_id[first_bars[s]])], (s, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=7, color="dimgrey")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set(title=title, ylabel="cumulative net P&L (USD)")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    dd.set(xlabel="evaluated bar (dotted: session boundary)", ylabel="drawdown (USD)")
    dd.grid(alpha=0.3)
    return _save(fig, path)


def plot_r_multiples(r_by_agent: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """Distribution of trade R-multiples per agent: a box per agent with every trade as a dot."""
    plt = _pyplot()
    names = list(r_by_agent)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(names))))
    rng = np.random.default_rng(0)  # vertical jitter of the dots only
    for k, name in enumerate(names):
        values = np.asarray(r_by_agent[name], dtype=np.float64)
        if values.size:
            ax.boxplot(values, positions=[k], vert=False, widths=0.5, showfliers=False)
            ax.scatter(values, k + rng.uniform(-0.15, 0.15, values.size), s=6, alpha=0.5)
        ax.annotate(f"n={values.size}", (1.0, k), xycoords=("axes fraction", "data"), xytext=(4, -3),
                    textcoords="offset points", fontsize=7)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()  # report order, top to bottom
    ax.set(title=title, xlabel="trade R-multiple (net P&L / initial risk)")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_cost_sweep(sweep: Mapping[str, Any], path: Path, title: str) -> Path:
    """Mean net P&L per seed against the cost multiple, one line per agent, break-even multiples marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (name, entry) in enumerate(sweep["agents"].items()):
        if not entry["trades"]:
            continue
        xs = [row["multiple"] for row in entry["rows"]]
        ys = [row["net_pnl_usd"] for row in entry["rows"]]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=name, linestyle=_STYLES[k % len(_STYLES)])
        be = entry.get("break_even_multiple")
        if be and be <= max(xs):
            ax.plot([be], [0.0], marker="x", color=line.get_color(), markersize=7)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(title=title, xlabel="commission and slippage multiple (x marks break-even)",
           ylabel="net P&L per seed (USD)")
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
