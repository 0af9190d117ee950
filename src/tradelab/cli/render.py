"""Rich rendering of the dict results that ``tradelab.stages`` returns. The only place tables are drawn."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim", "ok": "green", "failed": "red",
                "completed": "green", "running": "yellow", "interrupted": "yellow"}


class _Console(Console):
    """A Console that reports a closed pipe to the CLI boundary (which exits 141 quietly, like other CLI tools)
    instead of Rich's own ``SystemExit(1)``, so ``status | head -1`` and ``status --json | head -1`` end alike."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("the output pipe was closed")


def console(stderr: bool = False) -> Console:
    """The stdout console, or the stderr one (no wrapping, so an error stays one line).

    Without a terminal (logs, CI, ``make demo`` piped) Rich would assume 80 columns and cut paths; 160 keeps them.
    """
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return _Console(stderr=stderr, highlight=False, soft_wrap=stderr, width=width)


def error_panel(out: Console, message: str, title: str = "Error") -> None:
    out.print(Panel(message, title=title, border_style="red"))


def _styled(value: Any) -> str:
    """Colour known status words; escape everything else so values like ``[a,b]`` are not read as markup."""
    text = str(value)
    style = STATUS_STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else escape(text)


def kv_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        shown = escape(json.dumps(value, default=str)) if isinstance(value, (dict, list)) else _styled(value)
        table.add_row(str(key), shown)
    return table


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_styled(row.get(c, "")) if not isinstance(row.get(c), (dict, list))
                        else escape(json.dumps(row.get(c), default=str)) for c in columns))
    return table


def preflight_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Preflight ({report.get('engine', '?')})")
    for column in ("check", "status", "message"):
        table.add_column(column)
    for check in report.get("checks", []):
        table.add_row(check["name"], _styled(check["status"]), escape(check.get("message", "")))
    return table


def stage1_table(market: str, summary: dict[str, Any]) -> Table:
    """Stage 1 result: the figures a researcher checks first, then where everything went."""
    llm = summary.get("llm_stats") or {}
    hybrid = summary.get("hybrid_stats") or {}
    brief: dict[str, Any] = {
        "status": summary.get("status"),
        "timesteps": summary.get("timesteps"),
        "experiences (with outcome)": f"{summary.get('experiences')} ({summary.get('with_outcome')})",
        "advisor queries / mean batch": f"{llm.get('queries')} / {llm.get('mean_batch_size')}",
        "advisor parse rate": llm.get("parse_rate"),
        "agreement with PPO argmax": hybrid.get("agreement_with_argmax"),
        "vetoes": hybrid.get("vetoes"),
        "refinements": len(llm.get("refinements") or summary.get("refinements") or []),
        "time (s)": (summary.get("timings") or {}).get("total_s"),
    }
    base = summary.get("base_model") or {}
    if base:
        brief["advisor base model"] = f"{base.get('name')} (sha256 {base.get('sha256') or 'not recorded'})"
    advisor = llm.get("advisor") or {}
    if advisor:
        off = advisor.get("prefix_cache_off_reason")
        brief["advisor prefix cache"] = (f"off: {off}" if off else
                                         f"{advisor.get('prefix_cache_shared_tokens')} tokens shared per prompt")
    memory = summary.get("memory") or {}
    if memory:
        brief["peak memory (MB)"] = (f"process {memory.get('process_peak_rss_mb')}, adapter training "
                                     f"{memory.get('adapter_training_peak_mb')} "
                                     f"({memory.get('adapter_training_peak_kind')})")
    brief.update(summary.get("paths") or {})
    return kv_table(f"{market}: Stage 1", brief)


def stage2_tables(market: str, summary: dict[str, Any]) -> list[Table]:
    """Stage 2 result: preflight checks, then where the datasets, the log and the adapter went."""
    tables = [preflight_table(summary["preflight"])] if summary.get("preflight") else []
    dataset = summary.get("dataset") or {}
    brief: dict[str, Any] = {"rows": dataset.get("counts")}
    brief.update({f"dataset {k}": v for k, v in (dataset.get("paths") or {}).items()})
    if summary.get("launch_script"):
        brief["launch script"] = summary["launch_script"]
    run = summary.get("run") or {}
    for key in ("log_file", "return_code", "adapter_path"):
        if summary.get(key) is not None or run.get(key) is not None:
            brief[key] = summary.get(key, run.get(key))
    for key in ("run_dir", "steps", "val_reward_start", "val_reward_end"):
        if run.get(key) is not None:
            brief[key] = run[key]
    tables.append(kv_table(f"{market}: Stage 2", brief))
    return tables


def print_command(out: Any, summary: dict[str, Any]) -> None:
    """The launch command on its own line, shell-quoted and never wrapped, so it can be copied whole."""
    if summary.get("command_line"):
        out.print("command:", markup=False, highlight=False)
        out.print(summary["command_line"], markup=False, highlight=False, soft_wrap=True, crop=False)


def status_tables(status: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    if not status["markets"]:
        tables.append(kv_table("Status", {"markets": "none yet: run `python main.py data generate --market NQ`"}))
    for market in status["markets"]:
        tables.append(kv_table(f"{market['market']}: stages", market["stages"]))
        if market.get("base_model"):
            base = market["base_model"]
            tables.append(kv_table(f"{market['market']}: advisor base model", {
                "name": base.get("name"), "sha256": base.get("sha256") or "-", "source": base.get("source") or "-",
                "path": base.get("local_path")}))
        tables.append(rows_table(
            f"{market['market']}: artifacts",
            [{"artifact": a["name"], "exists": "yes" if a["exists"] else "no", "path": a["path"] or "-"}
             for a in market["artifacts"]],
        ))
        if market["runs"]:
            tables.append(rows_table(f"{market['market']}: Stage 2 runs", market["runs"]))
    return tables


def outcomes_table(outcomes: list[Any]) -> Table:
    table = Table(title="tradelab --test")
    for column in ("stage", "status", "time (s)", "figures", "outputs"):
        table.add_column(column)
    for o in outcomes:
        figures = o.error if o.error else ", ".join(f"{k}={v}" for k, v in o.figures.items())
        table.add_row(o.stage, _styled(o.status), f"{o.seconds:.1f}", escape(figures), escape("\n".join(o.outputs)))
    return table


def loop_table(report: dict[str, Any]) -> Table:
    """One row per advisor measurement and agent figures of the last iteration, from ``loop_report.json``."""

    def pct(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    def ci(value: Any) -> str:
        return "n/a" if not value else f"[{value[0]:.3f}, {value[1]:.3f}]"

    table = Table(title=f"{report['market']}: learning loop (edge {report['edge']})", show_lines=False)
    for column in ("measurement", "hit rate", "95% CI", "mean reward", "95% CI ", "non-HOLD", "parse"):
        table.add_column(column)
    rows = [("warm start", report["warm_start"]["advisor"])]
    for it in report["iterations"]:
        rows += [(f"iteration {it['iteration']}: Stage 1", it["advisor_stage1"]),
                 (f"iteration {it['iteration']}: Stage 2", it["advisor"])]
    for label, a in rows:
        if a:
            table.add_row(label, pct(a["hit_rate"]), ci(a["hit_rate_ci"]), pct(a["holdout_reward"]),
                          ci(a["holdout_reward_ci"]), pct(a["non_hold_share"]), pct(a["parse_rate"]))
    last = report["iterations"][-1] if report["iterations"] else None
    if last and last["agents"]:
        for name, a in last["agents"].items():
            low_high = a["net_pnl_usd_ci"]
            interval = "n/a" if not low_high else f"[{low_high[0]:,.0f}, {low_high[1]:,.0f}]"
            net = "n/a" if a["net_pnl_usd"] is None else f"{a['net_pnl_usd']:,.0f} USD"
            table.add_row(f"agent {name}", net, interval, "", "", pct(a["trades_per_day"]) + " tr/day", "")
    return table


@contextlib.contextmanager
def progress_bar(out: Console, label: str) -> Iterator[Any]:
    """A Rich progress bar; yields a ``progress(done, total)`` callback for the stage functions."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=out, transient=False, disable=not out.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
