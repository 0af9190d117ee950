"""``run_loop``: Stage 1 -> Stage 2 dataset -> Stage 2 engine -> evaluation, K times, measured on one holdout.

Iteration 1 starts Stage 1 from the warm-started advisor and a fresh PPO; every later iteration starts from what the
previous Stage 2 handed back and continues the previous PPO checkpoint. An adapter (local engine, verl) is continued
on its base; a whole model (the SofT-GRPO fork) becomes the next Stage 1's base, with a fresh adapter
(:func:`tradelab.handoff.stage1_start`). After each iteration the advisor is probed on the same holdout prompts (after
Stage 1 and after Stage 2), and every agent is backtested on the holdout.

State lives in the manifest's ``loop`` section (:class:`tradelab.manifest_schema.LoopSection`), written before and
after every stage, so a loop killed at any moment resumes at the iteration and stage where it stopped
(:mod:`tradelab.loop.resume`), from the inputs the earlier iterations pinned (:mod:`tradelab.loop.lineage`). The
loop holds the market's writer lock throughout (:func:`tradelab.attempts.market_writer`). The report
(``loop_report.json``/``.md``/``.png``) is rewritten after every iteration, so a long loop can be read while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab import stages
from tradelab.attempts import market_writer
from tradelab.errors import StageFailed, StageNotReady
from tradelab.fileio import new_stamped_dir, sha256_dir, sha256_file
from tradelab.handoff import FRESH_ADAPTER_DIR, AdvisorModel, base_or_none, output_model
from tradelab.loop import lineage, resume
from tradelab.loop.advisor_probe import ProbeContext
from tradelab.loop import report as loop_report
from tradelab.loop.lineage import require_pinned
from tradelab.loop.power import constant_floor, rule_ceiling, stage1_records
from tradelab.manifest import load_manifest, loop_of, set_loop
from tradelab.manifest_schema import (
    LoopEvaluation,
    LoopIteration,
    LoopSection,
    LoopSettings,
    LoopStage1,
    LoopStage2Run,
)
from tradelab.paths import Workspace
from tradelab.provenance import utc_now
from tradelab.runlock import LockOwner

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

log = logging.getLogger(__name__)

LOOP_STAGES: tuple[str, ...] = ("stage1", "stage2_dataset", "stage2_engine", "evaluation")
"""What one iteration runs, in order."""

Progress = Callable[[int, int], None]
EventSink = Callable[[str], None]


def run_loop(
    root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, *, restart: bool = False,
    on_event: EventSink | None = None, progress: Progress | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the learning loop and write its report.

    Args:
        root: Workspace root.
        market: Market name (its bars must exist).
        config: The whole config.
        settings: Iterations, engine, seeds, run profile, probe size.
        restart: Start a new loop even when an unfinished one exists.
        on_event: Receives one line per stage started or skipped (for the CLI).
        progress: Passed to Stage 1, the local engine and evaluation.
        ray_address: Run each evaluation's seeds as Ray tasks (:func:`tradelab.fanout.fan_out`); None runs them
            here. An execution choice, not a setting: a loop may resume with or without it.

    Returns:
        ``{"report": <loop_report.json content>, "paths": {json, md, png}}``.

    Raises:
        StageNotReady: No bars, or an unfinished loop with other settings (pass ``--restart``).
    """
    ws = Workspace.at(root)
    if not ws.bars_path(market).is_file():
        raise StageNotReady(f"{ws.bars_path(market)}: no bars for {market}; run `python main.py data generate "
                            f"--market {market} --edge 0.15` (a known edge) or `data import PATH` first")
    with market_writer(root, market, "loop") as owner:
        state = _start_or_resume(root, market, config, settings, restart, owner)
        emit = on_event or (lambda line: None)
        if state.interruptions and state.interruptions[-1].redo is None:
            stopped = state.interruptions[-1]
            emit(f"resuming: the last run stopped at {resume.activity(stopped.iteration, stopped.stage or '?')} "
                 f"({stopped.status})")
        probe_ctx = ProbeContext(root, market, config, settings, ws.resolve(state.report_dir))
        if state.warm_start is None:
            emit("measuring the warm-start advisor on the holdout prompts")
            if any(s.stage == "warm_start" and s.redo is None for s in state.interruptions):
                resume.note_redo(state, None, "warm_start", "afresh")
            _save(root, market, state, resume.activity(None, "warm_start"))
            state.warm_start = {"advisor": probe_ctx.measure(AdvisorModel(None, probe_ctx.warm_adapter()),
                                                             "warm_start")}
            _save(root, market, state, None)
        if state.rule_ceiling is None:  # the most the advisor's figures could reach on these prompts
            state.rule_ceiling = rule_ceiling(probe_ctx.probe(), level=config.evaluation.ci_level,
                                              seed=config.evaluation.base_seed)
        if state.constant_floor is None:  # what an answer with no cue at all earns on these prompts
            state.constant_floor = constant_floor(probe_ctx.probe(), level=config.evaluation.ci_level,
                                                  seed=config.evaluation.base_seed)
        for number in range(1, settings.iterations + 1):
            iteration = _iteration_state(state, number)
            for stage in LOOP_STAGES:
                if iteration.stages.get(stage) == "completed":
                    emit(f"iteration {number}: {stage} already completed, skipped")
                    continue
                _run_one(root, market, config, settings, state, iteration, stage, probe_ctx, progress, emit,
                         ray_address)
            if number < settings.iterations:  # readable while a long loop runs; the last one is written below
                _report(root, market, config, state, number, emit)
        report, paths = _report(root, market, config, state, None, emit)
        return {"report": report, "paths": {kind: str(ws.resolve(path)) for kind, path in paths.items()}}


def _run_one(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, state: LoopSection,
             iteration: LoopIteration, stage: str, probe_ctx: ProbeContext, progress: Progress | None,
             emit: EventSink, ray_address: str | None) -> None:
    """Run (or redo) one stage of one iteration, with its state saved before and after."""
    number = iteration.iteration
    redo = resume.prepare_redo(root, market, state, iteration, stage)
    emit(f"iteration {number}: {stage}" + (f" (redone after an interruption: {redo.how})" if redo else ""))
    iteration.stages = {**iteration.stages, stage: "running"}
    if stage == "stage1":  # where this attempt's experience records will begin
        experience = Workspace.at(root).experience_path(market)
        iteration.experience_from_byte = experience.stat().st_size if experience.is_file() else 0
    _save(root, market, state, resume.activity(number, stage))
    try:
        run_stage = _STAGES[stage]
        if stage == "evaluation" and ray_address is not None:
            run_stage = partial(run_stage, ray_address=ray_address)
        elif stage == "stage2_engine" and redo is not None and redo.resume_from is not None:
            run_stage = partial(run_stage, resume_from=redo.resume_from)
        run_stage(root, market, config, settings, state, iteration, probe_ctx, progress)
    except BaseException as exc:
        stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        state.status = stopped
        iteration.stages = {**iteration.stages, stage: stopped}
        state.error = f"iteration {number} {stage}: {type(exc).__name__}: {exc}"
        set_loop(root, market, state)
        raise
    iteration.stages = {**iteration.stages, stage: "completed"}
    _save(root, market, state, None)


def _save(root: str | Path, market: str, state: LoopSection, doing: str | None) -> None:
    """Save the loop state with what it is doing now (None: between stages)."""
    state.activity = doing
    set_loop(root, market, state)


def _report(root: str | Path, market: str, config: TradelabConfig, state: LoopSection, number: int | None,
            emit: EventSink) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the loop report (after iteration ``number``, or the final one, which completes the loop) and record
    its paths. The loop is recorded ``completed`` only once its final report is written."""
    emit("writing the loop report" + (f" after iteration {number}" if number is not None else ""))
    _save(root, market, state, resume.activity(number, "report"))
    for stopped in state.interruptions:
        if stopped.stage == "report" and stopped.redo is None:
            stopped.redo = "rewritten"
    shown = state if number is not None else state.model_copy(update={"status": "completed",
                                                                     "completed_at": utc_now()})
    try:
        report, paths = _write(root, market, config, shown)
    except BaseException as exc:
        state.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        state.error = f"{resume.activity(number, 'report')}: {type(exc).__name__}: {exc}"
        set_loop(root, market, state)
        raise
    state.report = paths
    if number is None:
        state.status, state.completed_at = "completed", shown.completed_at
    _save(root, market, state, None)
    return report, paths


# ------------------------------------------------------------------------------------------------------ state
def _start_or_resume(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, restart: bool,
                     owner: LockOwner) -> LoopSection:
    from tradelab.marketdata.store import market_origin

    previous = loop_of(load_manifest(root, market))
    if previous is not None and previous.status != "completed" and not restart:
        if previous.settings.identity() != settings.identity():
            raise StageNotReady(
                f"{Workspace.at(root).manifest_path(market)}: an unfinished loop has settings "
                f"{previous.settings.model_dump()}, this call asks for {settings.model_dump()}; resume it with the "
                f"same settings or pass --restart to start anew")
        resume.record_stop(previous)
        previous.settings = settings
        previous.status = "running"
        previous.error = None
        previous.pid, previous.host, previous.lock_token = owner.pid, owner.host, owner.token
        if previous.loop_id is None:
            previous.loop_id = _loop_id(root, market, config, settings)
        log.info("loop for %s resumes (%d iterations recorded)", market, len(previous.iterations))
        return previous
    ws = Workspace.at(root)
    return LoopSection(
        status="running", started_at=utc_now(), completed_at=None, settings=settings,
        market_origin=market_origin(root, market), warm_start=None, iterations=[], report=None,
        report_dir=ws.record(new_stamped_dir(ws.reports_dir(market), prefix="loop_")),
        loop_id=_loop_id(root, market, config, settings), pid=owner.pid, host=owner.host, lock_token=owner.token,
    )


def _loop_id(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings) -> str:
    """A new loop's id: a hash of what it starts from (its settings, the config, the bars and how much experience
    the market already has), so the same loop on the same workspace gets the same id, and two loops in one
    workspace (the second sees the first's experience) get different ones."""
    import hashlib
    import json

    from tradelab.config import config_hash
    from tradelab.fileio import sha256_file

    ws = Workspace.at(root)
    experience = ws.experience_path(market)
    basis = {"market": market, "settings": settings.identity(), "config": config_hash(config),
             "bars": sha256_file(ws.bars_path(market)),
             "experience_bytes": experience.stat().st_size if experience.is_file() else 0}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]


def _iteration_state(state: LoopSection, number: int) -> LoopIteration:
    for iteration in state.iterations:
        if iteration.iteration == number:
            return iteration
    iteration = LoopIteration(iteration=number)
    state.iterations.append(iteration)
    return iteration


def _previous(state: LoopSection, iteration: LoopIteration) -> LoopIteration | None:
    earlier = [it for it in state.iterations if it.iteration == iteration.iteration - 1]
    return earlier[0] if earlier else None


def _hand_on(ws: Workspace, config: TradelabConfig, previous: LoopIteration) -> AdvisorModel:
    """What the previous iteration's Stage 2 hands the next Stage 1 (as pinned, checked against its recorded
    sha256): its whole model, or its adapter on the base that iteration's Stage 1 trained on."""
    if previous.base_out_path is not None:
        return AdvisorModel(require_pinned(ws, previous.base_out_path, previous.base_out_sha256,
                                           f"iteration {previous.iteration}'s Stage 2 model"), None)
    if previous.adapter_out_path is None:
        raise StageNotReady(f"iteration {previous.iteration} recorded no Stage 2 output; run the loop with --restart")
    adapter = require_pinned(ws, previous.adapter_out_path, previous.adapter_out_sha256,
                             f"iteration {previous.iteration}'s Stage 2 adapter")
    return AdvisorModel(base_or_none(ws, config, previous.base_in_path), adapter)


# ------------------------------------------------------------------------------------------------------ stages
def _stage1(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, state: LoopSection,
            iteration: LoopIteration, probe: ProbeContext, progress: Progress | None) -> None:
    ws = Workspace.at(root)
    previous = _previous(state, iteration)
    start = _hand_on(ws, config, previous) if previous else None
    init_ppo = None
    if previous is not None:  # a loop older than the pins continued the market's own model
        init_ppo = require_pinned(ws, previous.ppo_out_path, previous.ppo_out_sha256,
                                  f"iteration {previous.iteration}'s PPO model") \
            if previous.ppo_out_path is not None else ws.ppo_dir(market) / "final.zip"
    result = stages.stage1(root, market, timesteps=settings.timesteps, start=start,
                           init_ppo=init_ppo, config=config, progress=progress,
                           run_id=resume.stage1_run_id(market, state, iteration.iteration))
    section = result.section
    pins = lineage.iteration_dir(ws, market, state, iteration.iteration)
    ppo = lineage.pin_files([ws.ppo_dir(market) / name for name in lineage.PPO_FILES], pins / "ppo")
    iteration.ppo_out_path = ws.record(ppo / "final.zip")
    iteration.ppo_out_sha256 = sha256_file(ppo / "final.zip")
    lora = ws.resolve(section.lora_adapter_path)
    if lora is not None:
        iteration.adapter_stage1_path = ws.record(lineage.pin_dir(lora, pins / "stage1_lora"))
    if start is None:
        adapter_in = probe.warm_adapter()
    else:
        adapter_in = start.adapter or ws.market_model_dir(market) / FRESH_ADAPTER_DIR
    base_in = ws.resolve(section.base_model.local_path if section.base_model else None)
    iteration.base_in_path = ws.record(base_in)
    iteration.base_in_sha256 = sha256_dir(base_in) if base_in is not None else None
    iteration.adapter_in_path = ws.record(adapter_in)
    iteration.adapter_in_sha256 = sha256_dir(adapter_in)
    iteration.ppo_init = ws.record(init_ppo)
    iteration.adapter_stage1_sha256 = section.adapter_sha256
    iteration.stage1 = LoopStage1(timesteps=result.timesteps, experiences=result.experiences,
                                  with_outcome=result.with_outcome, experience_samples=section.experience_samples,
                                  config_hash=section.config_hash, records=stage1_records(section.llm_stats))
    iteration.advisor_stage1 = probe.measure(probe.stage1_model(iteration), f"iteration{iteration.iteration}_stage1")


def _stage2_dataset(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                    state: LoopSection, iteration: LoopIteration, probe: ProbeContext,
                    progress: Progress | None) -> None:
    result = stages.stage2(root, market, engine=settings.engine, dataset_only=True,
                           config=config)
    ws = Workspace.at(root)
    splits = ("train", "val")
    pinned = lineage.pin_files([Path(result.dataset.paths[k]) for k in splits],
                               lineage.iteration_dir(ws, market, state, iteration.iteration) / "dataset")
    files = {k: pinned / Path(result.dataset.paths[k]).name for k in splits}
    iteration.dataset_paths = {k: ws.record(path) or "" for k, path in files.items()}
    iteration.dataset_sha256s = result.dataset.sha256s
    iteration.dataset_counts = result.dataset.counts
    iteration.dataset_constant_answers = result.dataset.constant_answers


def _stage2_engine(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                   state: LoopSection, iteration: LoopIteration, probe: ProbeContext,
                   progress: Progress | None, resume_from: Path | None = None) -> None:
    result = stages.stage2(root, market, engine=settings.engine, config=config,
                           progress=progress, resume_from=resume_from)
    ws = Workspace.at(root)
    run = result.run
    if run is None or run.output is None:
        raise StageFailed(f"stage2 ({settings.engine}) for {market} finished without recording its weights; the "
                          "loop needs them for the next Stage 1 (see logs/app.log)")
    output = run.output
    weights = ws.resolve(output.path)
    assert weights is not None
    pinned = lineage.pin_dir(weights, lineage.iteration_dir(ws, market, state, iteration.iteration) / "stage2_out")
    sha256 = sha256_dir(pinned)
    if output.kind == "full_model":
        iteration.base_out_path, iteration.base_out_sha256 = ws.record(pinned), sha256
    else:
        iteration.adapter_out_path, iteration.adapter_out_sha256 = ws.record(pinned), sha256
    iteration.stage2_run = LoopStage2Run(engine=run.engine, status=run.status, output_kind=output.kind,
                                         steps=run.steps_done, val_reward_start=run.val_reward_start,
                                         val_reward_end=run.val_reward_end, run_dir=run.output_dir,
                                         group_signal=run.group_signal, published_step=run.published_step,
                                         val_reward_published=run.val_reward_published,
                                         val_balanced_start=run.val_balanced_start,
                                         val_balanced_published=run.val_balanced_published,
                                         val_balanced_end=run.val_balanced_end, hand_on_reward=run.hand_on_reward)
    after = output_model(root, load_manifest(root, market), config, output)
    iteration.advisor, iteration.stage2_vs_stage1 = probe.measure_pair(
        probe.stage1_model(iteration), after, f"iteration{iteration.iteration}_stage2")


def _evaluation(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                state: LoopSection, iteration: LoopIteration, probe: ProbeContext,
                progress: Progress | None, ray_address: str | None = None) -> None:
    summary = stages.evaluate(root, market, seeds=settings.seeds, adapter="soft_grpo", config=config,
                              progress=progress, ray=ray_address)
    ws = Workspace.at(root)
    report_dir = ws.resolve(summary.report_dir)
    if report_dir is None:
        raise StageFailed(f"the evaluation of {market} recorded no report folder")
    figures = loop_report.agents_from_report(report_dir / "report.json", level=config.evaluation.ci_level,
                                 seed=config.evaluation.base_seed)
    iteration.evaluation = LoopEvaluation(report_dir=ws.record(report_dir) or str(report_dir),
                                          agents=figures["agents"], hybrid_minus_ppo=figures["hybrid_minus_ppo"],
                                          identical=figures["identical"], base_model=figures["base_model"])


_STAGES: dict[str, Callable[..., None]] = {
    "stage1": _stage1, "stage2_dataset": _stage2_dataset, "stage2_engine": _stage2_engine, "evaluation": _evaluation,
}


def _write(root: str | Path, market: str, config: TradelabConfig,
           state: LoopSection) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the loop report; returns it and its paths as recorded in the manifest (workspace-relative)."""
    ws = Workspace.at(root)
    report_dir = ws.resolve(state.report_dir)
    assert report_dir is not None
    report, paths = loop_report.write_loop_report(report_dir, market, config, state)
    return report, {kind: ws.record(path) or path for kind, path in paths.items()}
