"""Rich rendering of the typed results that ``tradelab.stages`` returns. The only place tables are drawn."""

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

from tradelab.manifest_schema import STATUSES, EvaluationSummary
from tradelab.results import Stage1Result, Stage2Result

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim", "ok": "green",
                **dict(zip(STATUSES, ("yellow", "green", "yellow", "red")))}
"""Colours of the preflight check results, the ``--test`` outcomes and the :data:`~tradelab.manifest_schema.Status`
vocabulary (running, completed, interrupted, failed)."""


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


def _cell(value: Any) -> str:
    return escape(json.dumps(value, default=str)) if isinstance(value, (dict, list)) else _styled(value)


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    return table


def preflight_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Preflight ({report['engine']})")
    for column in ("check", "status", "message"):
        table.add_column(column)
    for check in report["checks"]:
        table.add_row(check["name"], _styled(check["status"]), escape(check["message"]))
    return table


def profile_line(config: Any) -> str:
    """``Run profile: NAME (config hash H)`` for a resolved :class:`tradelab.config.TradelabConfig`."""
    from tradelab.config import config_hash

    return f"Run profile: {config.profile} (config hash {config_hash(config)})"


def stage1_table(market: str, result: Stage1Result) -> Table:
    """Stage 1 result: the figures a researcher checks first, then where everything went."""
    llm = result.section.llm_stats or {}
    hybrid = result.section.hybrid_stats or {}
    brief: dict[str, Any] = {
        "status": result.section.status,
        "profile (config hash)": f"{result.section.profile} ({result.section.config_hash})",
        "timesteps": result.timesteps,
        "experiences (with outcome)": f"{result.experiences} ({result.with_outcome})",
        "advisor queries / mean batch": f"{llm.get('queries')} / {llm.get('mean_batch_size')}",
        "advisor parse rate": llm.get("parse_rate"),
        "agreement with PPO argmax": hybrid.get("agreement_with_argmax"),
        "vetoes": hybrid.get("vetoes"),
        "refinements": len(llm.get("refinements") or []),
        "time (s)": result.timings.get("total_s"),
    }
    base = result.section.base_model
    if base is not None:
        brief["advisor base model"] = f"{base.name} (sha256 {base.sha256 or 'not recorded'})"
    advisor = llm.get("advisor")
    if advisor:
        off = advisor.get("prefix_cache_off_reason")
        brief["advisor prefix cache"] = (f"off: {off}" if off else
                                         f"{advisor.get('prefix_cache_shared_tokens')} tokens shared per prompt")
    memory = result.memory
    if memory:
        brief["peak memory (MB)"] = (f"process {memory['process_peak_rss_mb']}, adapter training "
                                     f"{memory['adapter_training_peak_mb']} ({memory['adapter_training_peak_kind']})")
    brief.update(result.paths.model_dump())
    return kv_table(f"{market}: Stage 1", brief)


def stage2_tables(market: str, result: Stage2Result) -> list[Table]:
    """Stage 2 result: preflight checks, then where the datasets, the log and the weights went."""
    tables = [preflight_table(result.preflight)]
    brief: dict[str, Any] = {"profile": result.dataset.profile, "rows": result.dataset.counts}
    brief.update({f"dataset {k}": v for k, v in result.dataset.paths.items()})
    order = result.dataset.train_order
    brief["train order"] = f"{order['value']}: {order['rows']} rows, {order['repeated_rows']} of them repeats"
    if result.launch is not None and result.launch.launch_script:
        brief["launch script"] = result.launch.launch_script
    run = result.run
    if run is not None:
        brief.update({"status": run.status, "log_file": run.log_file, "return_code": run.return_code,
                      "run_dir": run.output_dir})
        if run.output is not None:
            brief[f"output ({run.output.kind})"] = run.output.path
        if run.steps_done is not None:
            brief.update({"steps": run.steps_done, "val_reward_start": run.val_reward_start,
                          "val_reward_end": run.val_reward_end})
    tables.append(kv_table(f"{market}: Stage 2", brief))
    return tables


def print_command(out: Any, result: Stage2Result) -> None:
    """The launch command on its own line, shell-quoted and never wrapped, so it can be copied whole."""
    if result.launch is not None:
        out.print("command:", markup=False, highlight=False)
        out.print(result.launch.command_line, markup=False, highlight=False, soft_wrap=True, crop=False)


def evaluation_table(market: str, summary: EvaluationSummary) -> Table | None:
    """The evaluation's compact per-agent rows, or None when it ran no agent."""
    return rows_table(f"{market}: holdout evaluation", summary.table) if summary.table else None


def status_tables(status: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    if not status["markets"]:
        tables.append(kv_table("Status", {"markets": "none yet: run `python main.py data generate --market NQ`"}))
    for market in status["markets"]:
        tables.append(kv_table(f"{market['market']}: stages", {"writer lock": lock_line(market["lock"]),
                                                                **market["stages"]}))
        if market["base_model"]:
            base = market["base_model"]
            tables.append(kv_table(f"{market['market']}: advisor base model", {
                "name": base["name"], "sha256": base["sha256"] or "-", "source": base["source"] or "-",
                "path": base["local_path"]}))
        tables.append(rows_table(
            f"{market['market']}: artifacts",
            [{"artifact": a["name"], "exists": "yes" if a["exists"] else "no", "path": a["path"] or "-"}
             for a in market["artifacts"]],
        ))
        if market["runs"]:
            tables.append(rows_table(f"{market['market']}: Stage 2 runs", market["runs"]))
    return tables


def lock_line(lock: dict[str, Any]) -> str:
    """Who holds a market's writer lock, in one line (``status``)."""
    if lock["state"] == "free":
        return "free"
    doing = f", now {lock['doing']}" if lock.get("doing") else ""
    who = f"{lock['stage']}{doing}: pid {lock['pid']} on {lock['host']} since {lock['started_at']} (`{lock['command']}`)"
    if lock["state"] == "held":
        return f"held by {who}"
    if lock["state"] == "stale":
        return f"free (left by {who}, whose process is gone)"
    return f"held from another host by {who} (cannot be checked from here)"


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


def probe_table(report: dict[str, Any]) -> Table:
    """The advisor, the rule and each constant answer on one draw of holdout prompts, from ``probe.json``."""

    def num(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    def ci(value: Any) -> str:
        return "n/a" if not value else f"[{value[0]:.3f}, {value[1]:.3f}]"

    draw = report["draw"]
    table = Table(title=f"{report['market']}: {draw['prompts']} holdout prompts over {draw['sessions']} sessions, "
                        f"seed {draw['seed']} ({draw['up_share']:.1%} of the moves up)",
                  caption=f"advisor: {escape(report['advisor']['description'])}")
    for column in ("answers", "hit rate", "balanced", "95% CI", "mean reward", "95% CI ", "sides at 0.5", "non-HOLD"):
        table.add_column(column)
    labels = {"advisor": "advisor", "rule": "rule: follow the 5-bar return"}
    for name, f in report["figures"].items():
        table.add_row(labels.get(name, f"constant {name}"), num(f["hit_rate"]), num(f["balanced_hit_rate"]),
                      ci(f["balanced_hit_rate_ci"]), num(f["holdout_reward"]), ci(f["holdout_reward_ci"]),
                      num(f["sides_reward"]), num(f["non_hold_share"]))
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
