"""The report folder: ``report.json`` (every metric per agent), ``report.md`` (tables) and PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tradelab.evaluation.aggregate import aggregate_seeds
from tradelab.evaluation.compare import comparison_lines
from tradelab.evaluation.metrics import MIN_RATIO_DAYS, RATIO_KEYS
from tradelab.fileio import atomic_write_json, atomic_write_text

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


def agent_entry(per_seed: Sequence[tuple[int, dict[str, Any]]], level: float,
                pooled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One agent's report entry: metric means at the top level, then ``ci``, ``n`` and ``per_seed``.

    The ratios (:data:`~tradelab.evaluation.metrics.RATIO_KEYS`) are not means of per-seed ratios: at the top level
    they are ``pooled`` (every seed's days as one series, ``None`` below
    :data:`~tradelab.evaluation.metrics.MIN_RATIO_DAYS` days); without ``pooled`` (a walk-forward fold) they are the
    mean over seeds only when every seed has that many days. ``ratio_days`` is the n behind them; the means of the
    per-seed ratios stay in ``seed_mean`` for the per-seed section.

    Args:
        per_seed: ``(seed, metrics)`` pairs.
        level: Confidence level of ``ci``.
        pooled: :func:`~tradelab.evaluation.metrics.pooled_ratios` of this agent's days.
    """
    stats = aggregate_seeds([m for _, m in per_seed], level)
    entry = {**stats["mean"], "n_seeds": len(per_seed), "ci": stats["ci"], "n": stats["n"],
             "per_seed": [{"seed": seed, **metrics} for seed, metrics in per_seed]}
    seed_mean = {k: entry.get(k) for k in RATIO_KEYS}
    if pooled is None:
        days = [int(m.get("days") or 0) for _, m in per_seed]
        enough = bool(days) and min(days) >= MIN_RATIO_DAYS
        pooled = {**{k: seed_mean[k] if enough else None for k in RATIO_KEYS}, "days": sum(days)}
    entry.update({k: pooled[k] for k in RATIO_KEYS})
    entry["ratio_days"] = int(pooled["days"])
    entry["seed_mean"] = seed_mean
    return entry


def summary_table(agents: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Compact rows (agent + :data:`SUMMARY_KEYS`) with rounded numbers, for terminals and the manifest; a ratio
    over fewer than the minimum days reads ``n/a (n=... days)``."""
    return [{"agent": name, **{k: _summary_value(entry, k) for k in SUMMARY_KEYS}} for name, entry in agents.items()]


def _summary_value(entry: Mapping[str, Any], key: str) -> Any:
    """A rounded number, or for a ratio left undefined by too few days the n behind it (``n/a (n=4 days)``)."""
    if key in RATIO_KEYS and entry.get(key) is None and "ratio_days" in entry:
        return f"n/a (n={entry['ratio_days']} days)"
    return _round(entry.get(key))


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
    """A GitHub-markdown table: one row per agent, one column per metric (a missing ratio shows its n of days)."""
    lines = ["| agent | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, entry in agents.items():
        lines.append(f"| {name} | " + " | ".join(_metric_cell(entry, c) for c in columns) + " |")
    return "\n".join(lines)


def _metric_cell(entry: Mapping[str, Any], column: str) -> str:
    value = entry.get(column)
    if value is None and column in RATIO_KEYS and "ratio_days" in entry:
        return f"n/a (n={entry['ratio_days']} days)"
    return _cell(value)


def per_seed_table(agents: Mapping[str, Mapping[str, Any]]) -> str:
    """Every seed's own figures: net P&L, days, trades and the ratios over that seed's days alone."""
    columns = ("net_pnl_usd", "days", "trades", *RATIO_KEYS)
    lines = ["| agent | seed | " + " | ".join(columns) + " |", "| --- | ---: |" + " ---: |" * len(columns)]
    for name, entry in agents.items():
        for row in entry.get("per_seed") or []:
            lines.append(f"| {name} | {row['seed']} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def ci_table(agents: Mapping[str, Mapping[str, Any]], level: float) -> str:
    """Mean and interval of the :data:`CI_KEYS` per agent."""
    lines = [f"| agent | metric | mean | {level:.0%} CI |", "| --- | --- | ---: | --- |"]
    for name, entry in agents.items():
        for key in CI_KEYS:
            interval = (entry.get("ci") or {}).get(key)
            mean = (entry.get("seed_mean") or {}).get(key, entry.get(key)) if key in RATIO_KEYS else entry.get(key)
            if key in entry and interval is not None:
                lines.append(f"| {name} | {key} | {_cell(mean)} | "
                             f"[{_cell(interval[0])}, {_cell(interval[1])}] |")
    return "\n".join(lines)


INTERVAL_ROWS: tuple[tuple[str, str], ...] = (
    ("mean_daily_pnl_usd", "net P&L per day (USD)"), ("sharpe_pooled", "Sharpe (days of all seeds)"),
    ("net_pnl_usd_per_seed", "net P&L per seed (USD)"), ("win_rate", "win rate"), ("profit_factor", "profit factor"),
    ("expectancy_r", "expectancy (R)"), ("parse_rate", "advisor parse rate"), ("hit_rate", "advisor hit rate"),
)
"""Interval rows of ``report.md``: key in the ``intervals`` section and its label."""


def _interval_cell(row: Mapping[str, Any]) -> str:
    n = f"n={row['n']} {row['unit']}"
    if row.get("ci") is None:
        return f"n/a ({n})"
    low, high = row["ci"]
    return f"[{_cell(float(low))}, {_cell(float(high))}] ({n})"


def intervals_table(intervals: Mapping[str, Mapping[str, Any]], level: float) -> str:
    """Per agent and metric: the point value, its interval with the n behind it, and the method."""
    lines = [f"| agent | metric | value | {level:.0%} interval | method |", "| --- | --- | ---: | --- | --- |"]
    for name, entry in intervals.items():
        for key, label in INTERVAL_ROWS:
            row = entry["rows"].get(key)
            if row is not None:
                lines.append(f"| {name} | {label} | {_cell(row['value'])} | {_interval_cell(row)} | {row['method']} |")
    return "\n".join(lines)


def selection_table(intervals: Mapping[str, Mapping[str, Any]], n_trials: int) -> str:
    """PSR (true Sharpe > 0) and DSR (true Sharpe > best of ``n_trials`` by chance) per agent."""
    lines = ["| agent | days | trades | seeds | PSR (SR > 0) | DSR |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, entry in intervals.items():
        psr = _cell(entry["psr"]) if entry["psr"] is not None else f"n/a (n={entry['days']} days)"
        dsr = _cell(entry["dsr"]) if entry["dsr"] is not None else f"n/a (n={entry['days']} days)"
        lines.append(f"| {name} | {entry['days']} | {entry['trades']} | {entry['seeds']} | {psr} | {dsr} |")
    return "\n".join(lines)


def cost_sweep_table(sweep: Mapping[str, Any]) -> str:
    """Net P&L per seed at each cost multiple, and the break-even multiple."""
    from tradelab.evaluation.cost_sweep import format_break_even

    multiples = sweep["multiples"]
    lines = ["| agent | trades | " + " | ".join(f"{m:g}x net P&L/seed" for m in multiples)
             + " | 1x cost/trade (USD) | break-even multiple | entries matching bar opens |",
             "| --- | ---: |" + " ---: |" * len(multiples) + " ---: | ---: | ---: |"]
    for name, entry in sweep["agents"].items():
        cells = [_cell(row["net_pnl_usd"]) for row in entry["rows"]]
        per_trade = entry["cost_usd"] / entry["trades"] if entry["trades"] else None
        lines.append(f"| {name} | {entry['trades']} | " + " | ".join(cells) + f" | {_cell(per_trade)} | "
                     f"{format_break_even(entry['break_even_multiple'])} | "
                     f"{entry['entries_matching_bars']}/{entry['trades']} |")
    return "\n".join(lines)


def regime_table(by_agent: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Net P&L per seed / trades / mean R per regime, one row per agent."""
    regimes = list(next(iter(by_agent.values()), {}).keys())
    for rows in by_agent.values():
        regimes += [r for r in rows if r not in regimes]
    lines = ["| agent | " + " | ".join(f"{r}: P&L/seed, trades, mean R" for r in regimes) + " |",
             "| --- |" + " ---: |" * len(regimes)]
    for name, rows in by_agent.items():
        cells = []
        for regime in regimes:
            row = rows.get(regime) or {"trades": 0, "net_pnl_usd": 0.0, "mean_r": None}
            cells.append(f"{_cell(row['net_pnl_usd'])}, {row['trades']}, {_cell(row['mean_r'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regime_sections(regimes: Mapping[str, Any]) -> list[str]:
    """The markdown blocks of the ``regimes`` section."""
    from tradelab.evaluation.regimes import REGIME_NAMES

    bars = ", ".join(f"{k} {v}" for k, v in regimes["holdout_bars"].items())
    parts = ["## Regimes", f"Classified at each bar from bars up to it (deseasonalised volatility and recent "
             f"direction). Holdout bars per classified regime: {bars}. A trade counts in the regime of its decision "
             "bar; P&L is per seed.", regime_table(regimes["by_agent"])]
    truth = regimes.get("ground_truth")
    if truth:
        agree = truth["agreement"]
        parts.append(
            f"Against the synthetic generator's own regime labels over {agree['bars']} holdout bars: accuracy "
            f"{_cell(agree['accuracy'])}, Cohen's kappa {_cell(agree['cohen_kappa'])} (chance accuracy is about "
            f"{1 / len(REGIME_NAMES):.2f}).")
        if agree["confusion"]:
            lines = ["| generator \\ classified | " + " | ".join(REGIME_NAMES) + " |",
                     "| --- |" + " ---: |" * len(REGIME_NAMES)]
            for name, row in zip(REGIME_NAMES, agree["confusion"]):
                lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
            parts.append("\n".join(lines))
        parts += ["P&L by the generator's regime:", regime_table(truth["by_agent"])]
    return parts


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole ``report.md``."""
    agents, settings, holdout = report["agents"], report["settings"], report["holdout"]
    parts = [
        f"# Evaluation: {report['market']} ({report['created_at']})",
        f"Holdout bars {holdout['start_index']}..{holdout['end_index'] - 1} ({holdout['start']} to {holdout['end']}), "
        f"{holdout['bars']} bars, never used in training. Episodes per seed: {settings['episodes']}; seeds: "
        f"{settings['seeds']}; episode bars: {settings['episode_bars']}; adapter: {settings['adapter']}. "
        "Values are means over seeds; P&L is net of commission and slippage.",
        f"Run profile: {report['origin'].get('profile', 'not recorded')}; config hash "
        f"{report['origin']['config_hash']}.",
        *[f"`{alias}` is the same run as `{target}`." for alias, target in settings.get("aliases", {}).items()],
        *([f"Advisor base model: {base['name']} (sha256 {base.get('sha256') or 'not recorded'}; "
           f"{base.get('source') or 'folder'})."] if (base := report.get("base_model")) else []),
        "## Trading", f"Sharpe, Sortino and Calmar are annualised over every seed's evaluated days pooled into one "
                      f"series; with fewer than {MIN_RATIO_DAYS} days they show n/a (n = the days there were). "
                      "Each seed's own ratios are in the per-seed section.",
        markdown_table(agents, HEADLINE_KEYS),
        "## Rule compliance", markdown_table(agents, COMPLIANCE_COLUMNS),
    ]
    parts += comparison_lines(report.get("comparisons"), settings["ci_level"])
    advisor_agents = {n: e for n, e in agents.items() if "parse_rate" in e}
    if advisor_agents:
        parts += ["## Advisor", markdown_table(advisor_agents, ADVISOR_COLUMNS)]
    if report.get("intervals"):
        parts += [f"## Intervals ({settings['ci_level']:.0%})",
                  "Block bootstrap (arch, stationary) over days or trades in time order; Wilson for rates; t over "
                  "seeds only with 3 or more seeds. n/a means too few observations for an honest interval.",
                  intervals_table(report["intervals"], settings["ci_level"])]
    if report.get("selection"):
        parts += ["## Selection-aware Sharpe",
                  f"PSR: probability the true Sharpe exceeds 0. DSR: probability it exceeds the best Sharpe "
                  f"expected by chance from {report['selection']['n_trials']} configuration(s) evaluated on "
                  f"{report['market']} (from the manifest's evaluation history).",
                  selection_table(report["intervals"], report["selection"]["n_trials"])]
    if report.get("cost_sweep"):
        parts += ["## Cost sweep",
                  "The same trades re-scored from the ledger at multiples of commission and slippage (actions "
                  "fixed; nothing re-run).", cost_sweep_table(report["cost_sweep"])]
    if report.get("regimes"):
        parts += regime_sections(report["regimes"])
    parts += ["## Per seed", "Each seed's figures over its own days (ratios over a few days are noise: read the "
              "pooled ones above).", per_seed_table({n: e for n, e in agents.items()
                                                     if n not in settings.get("aliases", {})})]
    if len(settings["seed_list"]) >= 3:
        parts += [f"## Across seeds ({settings['ci_level']:.0%} t-interval, {len(settings['seed_list'])} seeds)",
                  ci_table(agents, settings["ci_level"])]
    design = report.get("walk_forward_design")
    if design:
        parts += [f"## Walk-forward ({design['folds']} folds, purged and embargoed)",
                  f"Each fold trains only on bars before it, less a purge of {design['purge_bars']} bars (labels "
                  f"that reach the test fold) and an embargo of {design['embargo_bars']} bars. The Stage 1 policy "
                  f"is not refit per fold, so the first {design['skipped_holdout_bars']} holdout bars are not "
                  "tested (the same purge and embargo from its last training bar)."]
    for window in report.get("walk_forward") or []:
        heading = (f"## Walk-forward fold {window['window']} (test bars {window['start_index']}.."
                   f"{window['end_index'] - 1}, {window['start']} to {window['end']})")
        note = (f"Train bars {window['train_start']}..{window['train_end'] - 1} ({window['train_bars']}); purged "
                f"{window['purged_bars']}, embargoed {window['embargoed_bars']}.") if "train_end" in window else ""
        parts += [heading, *([note] if note else []), markdown_table(window["agents"], SUMMARY_KEYS)]
    if report.get("plots"):
        parts += ["## Plots", *[f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]]
    return "\n\n".join(parts) + "\n"


def write_report(report_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``report_dir``; return both paths."""
    json_path = atomic_write_json(report_dir / "report.json", report)
    md_path = atomic_write_text(report_dir / "report.md", render_markdown(report))
    return json_path, md_path
