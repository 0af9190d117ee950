"""The programmatic API: every CLI subcommand and every menu entry calls exactly these functions.

Each function takes the workspace root, resolves the config, delegates to the package that owns the work (heavy
modules are imported here lazily, so importing ``tradelab.stages`` stays cheap) and returns the stage's typed result
(:mod:`tradelab.results`, :mod:`tradelab.manifest_schema`) for the caller to render. Nothing here prints. The loop, which composes these functions, has its own entry points in
:mod:`tradelab.loop.api`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.attempts import market_writer
from tradelab.config import DEFAULT_CONFIG_DIR, SMOKE_PROFILE, TradelabConfig, load_config
from tradelab.errors import ConfigError, StageNotReady, TradelabError
from tradelab.grpo import DEFAULT_ENGINE
from tradelab.handoff import AdvisorModel
from tradelab.manifest import load_manifest
from tradelab.manifest_schema import EvaluationSummary
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.results import Stage1Result, Stage2Result

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_StageResult = tuple[dict[str, Any], list[str]]
"""A --test stage's key figures and the paths it wrote."""
LineSink = Callable[[str], None]

TEST_PIPELINE_STAGES: tuple[str, ...] = ("data", "stage1", "stage2_dataset", "preflight", "stage2_local", "evaluation")
"""What ``python main.py --test`` runs, in order."""


def workspace_config(
    root: str | Path, config_dir: str | Path | None = None, *, profile: str | None = None
) -> TradelabConfig:
    """Load the config for a workspace: ``config_dir``, else ``<root>/config`` if present, else the shipped one,
    with the run profile ``profile`` (None: the default) laid over it."""
    return load_config(workspace_config_dir(root, config_dir), profile=profile)


def workspace_config_dir(root: str | Path, config_dir: str | Path | None = None) -> Path:
    """The config directory a workspace uses: ``config_dir``, else ``<root>/config`` if present, else the shipped
    one (where its profiles are looked up first)."""
    if config_dir is not None:
        return Path(config_dir)
    candidate = Path(root) / "config"
    return candidate if (candidate / "app.yaml").is_file() else DEFAULT_CONFIG_DIR


def _cfg(root: str | Path, config: TradelabConfig | None) -> TradelabConfig:
    return config if config is not None else workspace_config(root)


# ----------------------------------------------------------------------------------------------------------- data
def generate_data(
    root: str | Path, market: str, *, days: int | None = None, seed: int | None = None,
    edge: float | None = None, config: TradelabConfig | None = None, force: bool = False,
) -> dict[str, Any]:
    """Write a seeded synthetic market (``data generate``).

    Args:
        edge: Planted momentum edge (the known-answer market); None uses ``app.synthetic_edge``, 0 is the null market.
        force: Replace bars that a completed Stage 1 was trained on (refused otherwise).
    """
    from tradelab.marketdata import generate_market
    from tradelab.marketdata.store import refuse_replacing_used_bars

    cfg = _cfg(root, config)
    validate_market_name(market)
    with market_writer(root, market, "data generate"):
        refuse_replacing_used_bars(root, market, force=force)
        return generate_market(
            root, market, cfg,
            days=days if days is not None else cfg.app.synthetic_days,
            seed=seed if seed is not None else cfg.app.seed,
            edge=edge if edge is not None else cfg.app.synthetic_edge,
        )


def import_data(
    root: str | Path, path: str | Path, market: str, *, config: TradelabConfig | None = None, force: bool = False,
    file_format: str | None = None, timezone: str | None = None, stamp: str | None = None, session: str = "rth",
    force_timezone: bool = False,
) -> dict[str, Any]:
    """Import 1-minute bars in any known layout (``data import``).

    Args:
        force: Replace bars that a completed Stage 1 was trained on (refused otherwise).
        file_format, timezone, stamp, session, force_timezone: The import flags
            (:class:`tradelab.marketdata.importer.ImportOptions`).
    """
    from tradelab.marketdata import import_market
    from tradelab.marketdata.importer import ImportOptions
    from tradelab.marketdata.store import refuse_replacing_used_bars

    validate_market_name(market)
    options = ImportOptions(format=file_format, timezone=timezone, stamp=stamp, session=session,
                            force_timezone=force_timezone)
    with market_writer(root, market, "data import"):
        refuse_replacing_used_bars(root, market, force=force)
        return import_market(root, Path(path), market, _cfg(root, config), options)


def list_data(root: str | Path) -> list[dict[str, Any]]:
    """Every market with data: range, rows, source (``data list``)."""
    from tradelab.marketdata import list_markets

    return list_markets(root)


# --------------------------------------------------------------------------------------------------------- stage 1
def stage1(
    root: str | Path, market: str, *, timesteps: int | None = None, resume: bool = False,
    adapter: str | None = None, start: AdvisorModel | None = None, init_ppo: str | Path | None = None,
    config: TradelabConfig | None = None, progress: Progress | None = None, force: bool = False,
    run_id: str | None = None,
) -> Stage1Result:
    """Train the hybrid MaskablePPO + LoRA advisor agent and export Stage 2's inputs.

    Args:
        force: Start afresh even when that replaces a completed model trained for more timesteps.
        adapter: Advisor adapter to start from instead of the warm start: a PEFT adapter directory, or
            ``"soft_grpo"`` for what the market's last Stage 2 run produced (which closes the Stage 1 -> Stage 2 ->
            Stage 1 loop; a whole model becomes the base, with a fresh adapter).
        start: The advisor to start from, given directly (the loop's lineage); wins over ``adapter``.
        init_ppo: Continue this PPO model (a ``final.zip`` with ``vecnormalize.pkl`` beside it), or ``"last"``
            for the market's own ``ppo/final.zip``, instead of a fresh one.
        run_id: The id the run's experience records carry (the loop's, stable across a redo); None: from the time.
    """
    from tradelab.handoff import stage1_start
    from tradelab.stage1.train import run_stage1

    validate_market_name(market)
    cfg = _cfg(root, config)
    init = None
    if init_ppo is not None:
        init = Workspace.at(root).ppo_dir(market) / "final.zip" if str(init_ppo) == "last" else Path(init_ppo)
        for needed in (init, init.with_name("vecnormalize.npz")):
            if not needed.is_file():
                raise StageNotReady(f"{needed}: no such file; --init-ppo needs a Stage 1 final.zip with the "
                                    "vecnormalize.npz saved beside it (run stage1 once without --init-ppo)")
    with market_writer(root, market, "stage1"):  # the start may write a fresh adapter or adopt a base first
        if start is not None:
            cfg = stage1_start(root, market, cfg, start, seed=cfg.app.seed)
        else:
            cfg = with_advisor_adapter(cfg, root, market, adapter)
        return run_stage1(
            root, market, cfg, total_timesteps=timesteps, resume=resume, init_ppo=init,
            force=force, progress=progress, run_id=run_id,
        )


def with_advisor_adapter(
    config: TradelabConfig, root: str | Path, market: str, adapter: str | None
) -> TradelabConfig:
    """``config`` set to start Stage 1 from ``adapter`` (None keeps the config's own choice).

    ``"soft_grpo"`` is what the market's last Stage 2 run produced (:func:`tradelab.handoff.stage2_model`): its
    adapter on the base it was trained on, or its whole model as the new base with a fresh adapter.

    Raises:
        StageNotReady: There is no Stage 2 output, or the adapter folder has no ``adapter_config.json``.
    """
    from tradelab.handoff import adapter_folder, stage1_start, stage2_model

    if adapter is None:
        return config
    if adapter == "soft_grpo":
        model = stage2_model(root, market, load_manifest(root, market), config)
        if model is None:
            path = Workspace.at(root).soft_grpo_adapter_dir(market)
            raise StageNotReady(f"{path}: no Stage 2 output for {market} (no completed run, no adapter there); run "
                                f"Stage 2 first, e.g. `python main.py stage2 --market {market} --engine local --test`")
    else:
        model = AdvisorModel(None, adapter_folder(adapter))
    return stage1_start(root, market, config, model, seed=config.app.seed)


# --------------------------------------------------------------------------------------------------------- stage 2
def stage2(
    root: str | Path, market: str, *, engine: str = DEFAULT_ENGINE,
    dataset_only: bool = False, dry_run: bool = False, mode: str | None = None,
    resume_from: str | Path | None = None, config: TradelabConfig | None = None, on_line: LineSink | None = None,
    progress: Progress | None = None,
) -> Stage2Result:
    """Export the GRPO datasets, preflight, and run the chosen engine (or only export / only show the command)."""
    from tradelab.grpo.runner import run_stage2

    validate_market_name(market)
    return run_stage2(
        root, market, _cfg(root, config), engine=engine, dataset_only=dataset_only,
        dry_run=dry_run, mode=mode, resume_from=resume_from, on_line=on_line, progress=progress,
    )


def preflight(
    root: str | Path, market: str, *, engine: str = DEFAULT_ENGINE, dataset_only: bool = False,
    config: TradelabConfig | None = None, record: bool = True,
) -> dict[str, Any]:
    """Check the launch environment for an engine; returns the report as a dict (``ok`` + ``checks``).

    Args:
        record: Save the report as ``stage2.preflight`` (under the market lock); False only reads, so it runs
            while another process writes the market (``preflight --json``).
    """
    from tradelab.grpo.preflight import run_preflight

    validate_market_name(market)
    if not record:
        return run_preflight(root, market, _cfg(root, config), engine=engine, dataset_only=dataset_only,
                             record=False).to_dict()
    with market_writer(root, market, "preflight"):
        return run_preflight(root, market, _cfg(root, config), engine=engine, dataset_only=dataset_only).to_dict()


# ------------------------------------------------------------------------------------------------------ evaluation
def evaluate(
    root: str | Path, market: str, *, episodes: int | None = None, seeds: int | None = None,
    adapter: str = "stage1", walk_forward: bool | int = False, cost_sweep: bool = False,
    config: TradelabConfig | None = None, progress: Progress | None = None, ray: str | None = None,
) -> EvaluationSummary:
    """Holdout backtests of the hybrid agent against baselines; writes a report folder.

    Args:
        ray: Run the seeds as Ray tasks: a cluster address, or ``"local"`` for a private local instance
            (:func:`tradelab.fanout.fan_out`); None runs them here.
    """
    if ray is not None:
        return evaluate_markets(root, [market], episodes=episodes, seeds=seeds, adapter=adapter,
                                walk_forward=walk_forward, cost_sweep=cost_sweep, config=config, progress=progress,
                                ray=ray)[0]
    from tradelab.evaluation.run import evaluate as run_evaluation

    validate_market_name(market)
    with market_writer(root, market, "evaluation"):
        return run_evaluation(
            root, market, _cfg(root, config), episodes=episodes, seeds=seeds, adapter=adapter,
            walk_forward=walk_forward, cost_sweep=cost_sweep, progress=progress,
        )


def evaluate_markets(
    root: str | Path, markets: list[str], *, episodes: int | None = None, seeds: int | None = None,
    adapter: str = "stage1", walk_forward: bool | int = False, cost_sweep: bool = False,
    config: TradelabConfig | None = None, progress: Progress | None = None, ray: str | None = None,
) -> list[EvaluationSummary]:
    """:func:`evaluate` for several markets, one report each; with ``ray`` every (market, seed) is a Ray task."""
    from tradelab.evaluation.parallel import evaluate_markets as run_markets

    for market in markets:
        validate_market_name(market)
    with contextlib.ExitStack() as held:
        for market in sorted(set(markets)):
            held.enter_context(market_writer(root, market, "evaluation"))
        return run_markets(root, markets, _cfg(root, config), episodes=episodes, seeds=seeds, adapter=adapter,
                           walk_forward=walk_forward, cost_sweep=cost_sweep, ray_address=ray, progress=progress)


def probe(
    root: str | Path, market: str, *, adapter: str = "stage1", prompts: int | None = None, seed: int | None = None,
    config: TradelabConfig | None = None,
) -> dict[str, Any]:
    """Score an advisor on a draw of holdout prompts beside the rule and the constant answers
    (:func:`tradelab.loop.probe_draw.probe_draw`); ``prompts`` and ``seed`` default to the loop's own draw.

    Holds the market's lock like every stage, so no Stage 1 or Stage 2 replaces an adapter while it is read.
    """
    from tradelab.loop.probe_draw import probe_draw

    cfg = _cfg(root, config)
    with market_writer(root, market, "probe"):
        return probe_draw(root, market, cfg, adapter=adapter,
                          prompts=prompts if prompts is not None else cfg.evaluation.probe_prompts,
                          seed=seed if seed is not None else cfg.evaluation.base_seed)


def parse_markets(root: str | Path, text: str) -> list[str]:
    """``--market`` where several are allowed: ``NQ``, ``NQ,ES`` or ``all`` (every market with bars), in order.

    Raises:
        ConfigError: A name is not a valid market name.
        StageNotReady: ``all`` and no market has bars.
    """
    if text.strip().lower() == "all":
        markets = Workspace.at(root).markets_with_data()
        if not markets:
            raise StageNotReady(f"--market all: no market has bars under {Workspace.at(root).root / 'data'}; run "
                                "`python main.py data generate --market NQ` or `data import PATH` first")
        return markets
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--market {text!r}: name a market (NQ), several (NQ,ES) or all")
    return list(dict.fromkeys(validate_market_name(name) for name in names))


# ------------------------------------------------------------------------------------------------------------ loop
# ---------------------------------------------------------------------------------------------------------- status
def status(root: str | Path, market: str | None = None) -> dict[str, Any]:
    """Every market's manifest summary: who holds its lock, stages, artifacts (checked for existence), Stage 2 runs
    (:func:`tradelab.status.workspace_status`; a reader, it never takes a market's lock)."""
    from tradelab.status import workspace_status

    return workspace_status(root, market)


# -------------------------------------------------------------------------------------------------- --test pipeline
@dataclass
class StageOutcome:
    """One row of the ``--test`` summary."""

    stage: str
    status: str  # "ok" or "failed"
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None


def run_test_pipeline(
    root: str | Path, *, market: str | None = None, on_stage: Callable[[str], None] | None = None,
    progress: Progress | None = None, config: TradelabConfig | None = None,
) -> list[StageOutcome]:
    """The whole pipeline under ``config`` (default: the workspace's smoke profile); stops at the first failed stage.

    Order: generate the sample market if missing, Stage 1, Stage 2 dataset-only + preflight, the local engine's run,
    evaluation.
    """
    cfg = config if config is not None else workspace_config(root, profile=SMOKE_PROFILE)
    market = market or cfg.app.default_market
    ws = Workspace.at(root)
    runners: dict[str, Callable[[], _StageResult]] = {
        "data": lambda: _test_data(root, market, cfg, ws),
        "stage1": lambda: _test_stage1(root, market, cfg, progress),
        "stage2_dataset": lambda: _test_dataset(root, market, cfg),
        "preflight": lambda: _test_preflight(root, market, cfg),
        "stage2_local": lambda: _test_local(root, market, cfg, progress),
        "evaluation": lambda: _test_evaluation(root, market, cfg, progress),
    }
    outcomes: list[StageOutcome] = []
    for name in TEST_PIPELINE_STAGES:
        run = runners[name]
        if on_stage:
            on_stage(name)
        started = time.perf_counter()
        try:
            figures, outputs = run()
        except TradelabError as exc:
            log.exception("--test stage %s failed", name)
            outcomes.append(StageOutcome(name, "failed", time.perf_counter() - started, error=str(exc)))
            break
        outcomes.append(StageOutcome(name, "ok", time.perf_counter() - started, figures, outputs))
    return outcomes


def _test_data(root: str | Path, market: str, cfg: TradelabConfig, ws: Workspace) -> _StageResult:
    if ws.bars_path(market).exists():
        return {"generated": False}, [str(ws.bars_path(market))]
    report = generate_data(root, market, config=cfg)
    return {"generated": True, "rows": report.get("rows")}, [str(ws.bars_path(market))]


def _test_stage1(root: str | Path, market: str, cfg: TradelabConfig, progress: Progress | None) -> _StageResult:
    result = stage1(root, market, config=cfg, progress=progress)
    section = result.section
    figures = {"timesteps": section.total_timesteps, "experiences": section.experience_samples,
               "with_outcome": section.experience_with_outcome}
    ws = Workspace.at(root)
    recorded = (section.model_checkpoint, section.lora_adapter_path, section.experience_path)
    return figures, [str(ws.resolve(path)) for path in recorded if path]


def _test_dataset(root: str | Path, market: str, cfg: TradelabConfig) -> _StageResult:
    result = stage2(root, market, engine="local", dataset_only=True, config=cfg)
    counts = result.dataset.counts
    figures = {"train_rows": counts["train"], "val_rows": counts["val"], "malformed": counts["malformed"]}
    return figures, list(result.dataset.paths.values())


def _test_preflight(root: str | Path, market: str, cfg: TradelabConfig) -> _StageResult:
    report = preflight(root, market, engine="verl", dataset_only=True, config=cfg)
    counts: dict[str, int] = {}
    for check in report["checks"]:
        counts[check["status"]] = counts.get(check["status"], 0) + 1
    if not report["ok"]:
        failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
        raise StageNotReady(f"preflight failed: {', '.join(failed)}")
    return counts, []


def _test_local(root: str | Path, market: str, cfg: TradelabConfig, progress: Progress | None) -> _StageResult:
    result = stage2(root, market, engine="local", config=cfg, progress=progress)
    run = result.run
    if run is None or run.output is None:
        raise StageNotReady(f"the local engine's test run for {market} recorded no output")
    figures = {"steps": run.steps_done, "val_reward_start": run.val_reward_start, "val_reward_end": run.val_reward_end}
    ws = Workspace.at(root)
    return figures, [str(ws.resolve(run.output.path)), str(run.output_dir)]


def _test_evaluation(root: str | Path, market: str, cfg: TradelabConfig, progress: Progress | None) -> _StageResult:
    summary = evaluate(root, market, config=cfg, progress=progress)
    net = {row["agent"]: row["net_pnl_usd"] for row in summary.table or []}
    figures = {"agents": len(net), **{f"{agent}_net_usd": net[agent] for agent in ("hybrid", "ppo") if agent in net}}
    return figures, [str(summary.report_dir)]
