"""The report folder: ``report.json`` (every metric per agent), ``report.md`` (tables) and PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tradelab.evaluation.aggregate import aggregate_seeds
from tradelab.io import atomic_write_json, atomic_write_text

HEADLINE_KEYS: tuple[str, ...] = (
    "net_pnl_usd", "sharpe", "sortino", "max_drawdown", "max_drawdown_usd", "calmar", "trades", "win_rate",
    "profit_factor", "expectancy_r", "avg_bars_held", "exposure", "turnover",
)
"""Columns of the main table in ``report.md``."""

COMPLIANCE_COLUMNS: tuple[str, ...] = ("drawdown_breaches", "flatten_violations", "overnight_positions")
ADVISOR_COLUMNS: tuple[str, ...] = (
    "advice_count", "parse_rate", "agreement_with_ppo", "veto_rate", "hit_rate", "hit_rate_up", "hit_rate_down",
    "brier_score",
)
SUMMARY_KEYS: tuple[str, ...] = ("net_pnl_usd", "sharpe", "max_drawdown", "win_rate", "profit_factor", "trades")
"""Columns of the compact per-agent table returned to the CLI and stored in the manifest."""

CI_KEYS: tuple[str, ...] = ("net_pnl_usd", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
                            "expectancy_r", "hit_rate", "brier_score")
"""Metrics shown with their confidence interval in ``report.md`` when several seeds ran."""


def agent_entry(per_seed: Sequence[tuple[int, dict[str, Any]]], level: float) -> dict[str, Any]:
    """One agent's report entry: metric means at the top level, then ``ci``, ``n`` and ``per_seed``.

    Args:
        per_seed: ``(seed, metrics)`` pairs.
        level: Confidence level of ``ci``.
    """
    stats = aggregate_seeds([m for _, m in per_seed], level)
    return {**stats["mean"], "n_seeds": len(per_seed), "ci": stats["ci"], "n": stats["n"],
            "per_seed": [{"seed": seed, **metrics} for seed, metrics in per_seed]}


def summary_table(agents: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Compact rows (agent + :data:`SUMMARY_KEYS`) with rounded numbers, for terminals and the manifest."""
    return [{"agent": name, **{k: _round(entry.get(k)) for k in SUMMARY_KEYS}} for name, entry in agents.items()]


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4 if abs(value) < 100 else 2)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def markdown_table(agents: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table: one row per agent, one column per metric."""
    lines = ["| agent | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, entry in agents.items():
        lines.append(f"| {name} | " + " | ".join(_cell(entry.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def ci_table(agents: Mapping[str, Mapping[str, Any]], level: float) -> str:
    """Mean and interval of the :data:`CI_KEYS` per agent."""
    lines = [f"| agent | metric | mean | {level:.0%} CI |", "| --- | --- | ---: | --- |"]
    for name, entry in agents.items():
        for key in CI_KEYS:
            interval = (entry.get("ci") or {}).get(key)
            if key in entry and interval is not None:
                lines.append(f"| {name} | {key} | {_cell(entry[key])} | "
                             f"[{_cell(interval[0])}, {_cell(interval[1])}] |")
    return "\n".join(lines)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole ``report.md``."""
    agents, settings, holdout = report["agents"], report["settings"], report["holdout"]
    parts = [
        f"# Evaluation: {report['market']} ({report['created_at']})",
        f"Holdout bars {holdout['start_index']}..{holdout['end_index'] - 1} ({holdout['start']} to {holdout['end']}), "
        f"{holdout['bars']} bars, never used in training. Episodes per seed: {settings['episodes']}; seeds: "
        f"{settings['seeds']}; episode bars: {settings['episode_bars']}; adapter: {settings['adapter']}. "
        "Values are means over seeds; P&L is net of commission and slippage.",
        *[f"`{alias}` is the same run as `{target}`." for alias, target in settings.get("aliases", {}).items()],
        "## Trading", markdown_table(agents, HEADLINE_KEYS),
        "## Rule compliance", markdown_table(agents, COMPLIANCE_COLUMNS),
    ]
    advisor_agents = {n: e for n, e in agents.items() if "parse_rate" in e}
    if advisor_agents:
        parts += ["## Advisor", markdown_table(advisor_agents, ADVISOR_COLUMNS)]
    if len(settings["seed_list"]) > 1:
        parts += [f"## Across seeds ({settings['ci_level']:.0%} interval)", ci_table(agents, settings["ci_level"])]
    for window in report.get("walk_forward") or []:
        parts += [f"## Walk-forward window {window['window']} (bars {window['start_index']}..{window['end_index'] - 1},"
                  f" {window['start']} to {window['end']})", markdown_table(window["agents"], SUMMARY_KEYS)]
    if report.get("plots"):
        parts += ["## Plots", *[f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]]
    return "\n\n".join(parts) + "\n"


def write_report(report_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``report_dir``; return both paths."""
    json_path = atomic_write_json(report_dir / "report.json", report)
    md_path = atomic_write_text(report_dir / "report.md", render_markdown(report))
    return json_path, md_path
