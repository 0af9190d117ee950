"""Subcommand handlers: call ``tradelab.stages`` and render what comes back. Each returns an exit code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from tradelab import stages
from tradelab.cli import render
from tradelab.config import TradelabConfig


def run_command(args: argparse.Namespace, out: Console) -> int:
    handler = {
        "data": _data, "stage1": _stage1, "stage2": _stage2, "preflight": _preflight,
        "evaluate": _evaluate, "status": _status, "loop": _loop, "probe": _probe,
    }[args.command]
    return handler(args, out)


def _data(args: argparse.Namespace, out: Console) -> int:
    root = args.root
    if args.data_command == "generate":
        report = stages.generate_data(root, args.market, days=args.days, seed=args.seed, edge=args.edge,
                                      config=_config(args), force=args.force)
        out.print(render.kv_table(f"{args.market}: synthetic market", _brief(report)))
    elif args.data_command == "import":
        report = stages.import_data(root, args.path, args.market, config=_config(args),
                                    force=args.force, file_format=args.format, timezone=args.timezone,
                                    stamp=args.stamp, session=args.session, force_timezone=args.force_timezone)
        out.print(render.kv_table(f"{args.market}: imported", _import_brief(report)))
    else:
        _warn_stray(root)
        rows = stages.list_data(root)
        if not rows:
            out.print("No market data yet: run `python main.py data generate --market NQ` or `data import PATH`.")
        else:
            out.print(render.rows_table("Markets", rows))
    return 0


def _warn_stray(root: str) -> None:
    """One warning line per folder under data/ that listings skip (not a market name)."""
    from tradelab.paths import Workspace

    err = render.console(stderr=True)
    for folder in Workspace.at(root).stray_data_dirs():
        err.print(f"warning: {folder}: not a market name (use 1-16 uppercase letters or digits); skipped",
                  markup=False)


def _import_brief(report: dict) -> dict:
    """The import summary: what was read, how it was placed on the clock and calendar, what was kept."""
    from tradelab.marketdata.importer import import_summary

    return import_summary(report)


def _brief(report: dict) -> dict:
    keep = ("market", "rows", "start", "end", "source", "sessions", "rolls", "repairs", "bars_path", "path")
    return {k: report[k] for k in keep if k in report} or report


def _config(args: argparse.Namespace) -> TradelabConfig:
    """The workspace's config under the command line's run profile (:func:`tradelab.cli.app.chosen_profile`)."""
    return stages.workspace_config(args.root, args.config_dir, profile=args.profile)


def _stage1(args: argparse.Namespace, out: Console) -> int:
    cfg = _config(args)
    out.print(render.profile_line(cfg))
    with render.progress_bar(out, f"Stage 1 {args.market}: PPO timesteps") as progress:
        summary = stages.stage1(args.root, args.market, timesteps=args.timesteps,
                                resume=args.resume, adapter=args.adapter, init_ppo=args.init_ppo, config=cfg,
                                progress=progress, force=args.force)
    out.print(render.stage1_table(args.market, summary))
    return 0


def _stage2(args: argparse.Namespace, out: Console) -> int:
    cfg = _config(args)
    out.print(render.profile_line(cfg))
    with render.progress_bar(out, f"Stage 2 {args.market} ({args.engine})") as progress:
        summary = stages.stage2(
            args.root, args.market, engine=args.engine, dataset_only=args.dataset_only,
            dry_run=args.dry_run, mode=args.mode, resume_from=args.resume_from, config=cfg,
            on_line=lambda line: out.print(line, markup=False, highlight=False), progress=progress,
        )
    for table in render.stage2_tables(args.market, summary):
        out.print(table)
    render.print_command(out, summary)
    return 0


def _preflight(args: argparse.Namespace, out: Console) -> int:
    # --json only reads (scripts poll it, also while a loop runs); the table form records the report.
    report = stages.preflight(args.root, args.market, engine=args.engine, dataset_only=args.dataset_only,
                              config=_config(args), record=not args.json)
    if args.json:
        print(json.dumps(report, indent=2, default=str))  # noqa: T201 - machine-readable output for scripts
    else:
        out.print(render.preflight_table(report))
    return 0 if report["ok"] else 1


def _evaluate(args: argparse.Namespace, out: Console) -> int:
    cfg = _config(args)
    markets = stages.parse_markets(args.root, args.market)
    out.print(render.profile_line(cfg))
    _note_stage1_profiles(args.root, markets, cfg, out)
    title = f"Evaluation {','.join(markets)}" + (" (Ray)" if args.ray else "")
    with render.progress_bar(out, title) as progress:
        summaries = stages.evaluate_markets(
            args.root, markets, episodes=args.episodes, seeds=args.seeds, adapter=args.adapter,
            walk_forward=args.walk_forward, cost_sweep=args.cost_sweep, config=cfg, progress=progress, ray=args.ray)
    for market, summary in zip(markets, summaries):
        table = render.evaluation_table(market, summary)
        if table is not None:
            out.print(table)
        out.print(f"Report: {summary.report_dir}")
    return 0


def _loop(args: argparse.Namespace, out: Console) -> int:
    from tradelab.loop import api as loop_api

    cfg = _config(args)
    markets = stages.parse_markets(args.root, args.market)
    out.print(render.profile_line(cfg))
    with render.progress_bar(out, f"Loop {','.join(markets)}") as progress:
        results = loop_api.loop_markets(
            args.root, markets, iterations=args.iterations, engine=args.engine, seeds=args.seeds,
            probe_prompts=args.probe_prompts, timesteps=args.timesteps, restart=args.restart,
            config=cfg, progress=progress, on_event=lambda line: out.print(f"[bold]→[/bold] {line}"), ray=args.ray,
        )
    for result in results:
        out.print(render.loop_table(result["report"]))
        out.print(f"Loop report: {result['paths']['json']}")
    return 0


def _probe(args: argparse.Namespace, out: Console) -> int:
    cfg = _config(args)
    out.print(render.profile_line(cfg))
    report = stages.probe(args.root, args.market, adapter=args.adapter, prompts=args.prompts, seed=args.seed,
                          config=cfg)
    out.print(render.probe_table(report))
    out.print(f"Probe report: {report['report_path']}")
    return 0


def _note_stage1_profiles(root: str, markets: list[str], cfg: TradelabConfig, out: Console) -> None:
    """One note per market whose Stage 1 ran under another profile than this evaluation's (a smoke model evaluated
    at full size takes long; the same --profile evaluates it with its own settings)."""
    from tradelab.manifest import load_manifest, stage1_of

    for market in markets:
        stage1 = stage1_of(load_manifest(root, market))
        if stage1 is not None and stage1.profile is not None and stage1.profile != cfg.profile:
            out.print(f"note: {market}'s Stage 1 ran under profile {stage1.profile}; this evaluation runs under "
                      f"{cfg.profile} (pass --profile {stage1.profile} to evaluate with its settings)", markup=False)


def _status(args: argparse.Namespace, out: Console) -> int:
    if args.market is None:
        _warn_stray(args.root)
    status = stages.status(args.root, args.market)
    if args.json:
        print(json.dumps(status, indent=2, default=str))  # noqa: T201 - machine-readable output for scripts
    else:
        for table in render.status_tables(status):
            out.print(table)
    return 0


def run_smoke_pipeline(args: argparse.Namespace, out: Console) -> int:
    """``python main.py --test``: the whole pipeline, non-interactive, summary table, exit 0 only if all passed."""
    root = Path(args.root)
    cfg = _config(args)
    out.print(f"tradelab --test in {root.resolve()}")
    out.print(render.profile_line(cfg))
    with render.progress_bar(out, "working") as progress:
        outcomes = stages.run_test_pipeline(
            root, market=args.market, config=cfg, progress=progress,
            on_stage=lambda name: out.print(f"[bold]→ {name}[/bold]"),
        )
    out.print(render.outcomes_table(outcomes))
    ok = len(outcomes) == len(stages.TEST_PIPELINE_STAGES) and all(o.status == "ok" for o in outcomes)
    out.print(f"Logs: {root.resolve() / 'logs' / 'app.log'}")
    return 0 if ok else 1
