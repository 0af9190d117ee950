"""``run_loop``: Stage 1 -> Stage 2 dataset -> Stage 2 engine -> evaluation, K times, measured on one holdout.

Iteration 1 starts Stage 1 from the warm-started advisor and a fresh PPO; every later iteration starts from what the
previous Stage 2 handed back and continues the previous PPO checkpoint. An adapter (local engine, verl) is continued
on its base; a whole model (the SofT-GRPO fork) becomes the next Stage 1's base, with a fresh adapter
(:func:`tradelab.handoff.stage1_start`). After each iteration the advisor is probed on the same holdout prompts (after
Stage 1 and after Stage 2), and every agent is backtested on the holdout.

State lives in the manifest's ``loop`` section (:class:`tradelab.manifest_schema.LoopSection`), written after every
stage, so an interrupted loop resumes at the iteration and stage where it stopped. The report
(``loop_report.json``/``.md``/``.png``) is rewritten after every iteration, so a long loop can be read while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab import stages
from tradelab.errors import StageFailed, StageNotReady
from tradelab.fileio import atomic_write_text, new_stamped_dir, sha256_dir
from tradelab.handoff import FRESH_ADAPTER_DIR, AdvisorModel, base_or_none, output_model, stage1_model
from tradelab.loop import report as loop_report
from tradelab.loop.power import rule_ceiling, stage1_records
from tradelab.manifest import load_manifest, loop_of, set_loop
from tradelab.manifest_schema import (
    LoopEvaluation,
    LoopIteration,
    LoopSection,
    LoopSettings,
    LoopStage1,
    LoopStage2Run,
    data_of,
)
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.loop.probe import ProbeSet

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
    state = _start_or_resume(root, market, settings, restart)
    emit = on_event or (lambda line: None)
    probe_ctx = _ProbeContext(root, market, config, settings, ws.resolve(state.report_dir))
    if state.warm_start is None:
        emit("measuring the warm-start advisor on the holdout prompts")
        state.warm_start = {"advisor": probe_ctx.measure(AdvisorModel(None, probe_ctx.warm_adapter()), "warm_start")}
        set_loop(root, market, state)
    if state.rule_ceiling is None:  # the most the advisor's figures could reach on these prompts
        state.rule_ceiling = rule_ceiling(probe_ctx.probe(), level=config.evaluation.ci_level,
                                          seed=config.evaluation.base_seed)
    for number in range(1, settings.iterations + 1):
        iteration = _iteration_state(state, number)
        for stage in LOOP_STAGES:
            if iteration.stages.get(stage) == "completed":
                emit(f"iteration {number}: {stage} already completed, skipped")
                continue
            emit(f"iteration {number}: {stage}")
            iteration.stages = {**iteration.stages, stage: "running"}
            set_loop(root, market, state)
            try:
                run_stage = _STAGES[stage]
                if stage == "evaluation" and ray_address is not None:
                    run_stage = partial(run_stage, ray_address=ray_address)
                run_stage(root, market, config, settings, state, iteration, probe_ctx, progress)
            except BaseException as exc:
                state.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                state.error = f"iteration {number} {stage}: {type(exc).__name__}: {exc}"
                set_loop(root, market, state)
                raise
            iteration.stages = {**iteration.stages, stage: "completed"}
            set_loop(root, market, state)
        if number < settings.iterations:  # readable while a long loop runs; the last one is written below
            state.report = _write(root, market, config, state)[1]
            set_loop(root, market, state)
    state.status = "completed"
    state.completed_at = utc_now()
    report, paths = _write(root, market, config, state)
    state.report = paths
    set_loop(root, market, state)
    return {"report": report, "paths": {kind: str(ws.resolve(path)) for kind, path in paths.items()}}


# ------------------------------------------------------------------------------------------------------ state
def _start_or_resume(root: str | Path, market: str, settings: LoopSettings, restart: bool) -> LoopSection:
    from tradelab.marketdata.store import market_origin

    previous = loop_of(load_manifest(root, market))
    if previous is not None and previous.status != "completed" and not restart:
        if previous.settings.identity() != settings.identity():
            raise StageNotReady(
                f"{Workspace.at(root).manifest_path(market)}: an unfinished loop has settings "
                f"{previous.settings.model_dump()}, this call asks for {settings.model_dump()}; resume it with the "
                f"same settings or pass --restart to start anew")
        previous.settings = settings
        previous.status = "running"
        previous.error = None
        log.info("loop for %s resumes (%d iterations recorded)", market, len(previous.iterations))
        return previous
    ws = Workspace.at(root)
    return LoopSection(
        status="running", started_at=utc_now(), completed_at=None, settings=settings,
        market_origin=market_origin(root, market), warm_start=None, iterations=[], report=None,
        report_dir=ws.record(new_stamped_dir(ws.reports_dir(market), prefix="loop_")),
    )


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
    """What the previous iteration's Stage 2 hands the next Stage 1: its whole model, or its adapter on the base
    that iteration's Stage 1 trained on."""
    if previous.base_out_path is not None:
        return AdvisorModel(ws.resolve(previous.base_out_path), None)
    if previous.adapter_out_path is None:
        raise StageNotReady(f"iteration {previous.iteration} recorded no Stage 2 output; run the loop with --restart")
    return AdvisorModel(base_or_none(ws, config, previous.base_in_path), ws.resolve(previous.adapter_out_path))


# ------------------------------------------------------------------------------------------------------ stages
def _stage1(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, state: LoopSection,
            iteration: LoopIteration, probe: _ProbeContext, progress: Progress | None) -> None:
    ws = Workspace.at(root)
    previous = _previous(state, iteration)
    start = _hand_on(ws, config, previous) if previous else None
    init_ppo = ws.ppo_dir(market) / "final.zip" if previous else None
    result = stages.stage1(root, market, timesteps=settings.timesteps, start=start, init_ppo=init_ppo, config=config,
                           progress=progress)
    section = result.section
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
                    state: LoopSection, iteration: LoopIteration, probe: _ProbeContext,
                    progress: Progress | None) -> None:
    result = stages.stage2(root, market, engine=settings.engine, dataset_only=True, config=config)
    iteration.dataset_sha256s = result.dataset.sha256s
    iteration.dataset_counts = result.dataset.counts


def _stage2_engine(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                   state: LoopSection, iteration: LoopIteration, probe: _ProbeContext,
                   progress: Progress | None) -> None:
    result = stages.stage2(root, market, engine=settings.engine, config=config, progress=progress)
    ws = Workspace.at(root)
    run = result.run
    if run is None or run.output is None:
        raise StageFailed(f"stage2 ({settings.engine}) for {market} finished without recording its weights; the "
                          "loop needs them for the next Stage 1 (see logs/app.log)")
    output = run.output
    weights = ws.resolve(output.path)
    sha256 = output.sha256 or sha256_dir(weights)
    if output.kind == "full_model":
        iteration.base_out_path, iteration.base_out_sha256 = ws.record(weights), sha256
    else:
        iteration.adapter_out_path, iteration.adapter_out_sha256 = ws.record(weights), sha256
    iteration.stage2_run = LoopStage2Run(engine=run.engine, status=run.status, output_kind=output.kind,
                                         steps=run.steps_done, val_reward_start=run.val_reward_start,
                                         val_reward_end=run.val_reward_end, run_dir=run.output_dir,
                                         group_signal=run.group_signal)
    after = output_model(root, load_manifest(root, market), config, output)
    iteration.advisor, iteration.stage2_vs_stage1 = probe.measure_pair(
        probe.stage1_model(iteration), after, f"iteration{iteration.iteration}_stage2")


def _evaluation(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                state: LoopSection, iteration: LoopIteration, probe: _ProbeContext,
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
                                          identical=figures["identical"])


_STAGES: dict[str, Callable[..., None]] = {
    "stage1": _stage1, "stage2_dataset": _stage2_dataset, "stage2_engine": _stage2_engine, "evaluation": _evaluation,
}


# ------------------------------------------------------------------------------------------------------ probing
class _ProbeContext:
    """The holdout prompts (built once) and the advisor that answers them (loaded once per base, adapters swapped)."""

    def __init__(self, root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                 report_dir: Path) -> None:
        self.root, self.market, self.config, self.settings = root, market, config, settings
        self.answers_dir = report_dir / "answers"
        self._probe: ProbeSet | None = None
        self._advisor: Any = None
        self._base: Path | None = None

    def warm_adapter(self) -> Path:
        """The adapter iteration 1 starts from (``llm.adapter_path``, else the warm start, built if missing)."""
        from tradelab.stage1.wiring import initial_adapter

        return initial_adapter(Workspace.at(self.root).root, self.market, self.config, seed=self.config.app.seed,
                               resume=False)

    def stage1_model(self, iteration: LoopIteration) -> AdvisorModel:
        """The advisor an iteration's Stage 1 left: ``stage1_lora`` on the base it trained on."""
        ws = Workspace.at(self.root)
        model = stage1_model(self.root, self.market, load_manifest(self.root, self.market), self.config)
        return model if model is not None else AdvisorModel(ws.resolve(iteration.base_in_path),
                                                            ws.stage1_lora_dir(self.market))

    def probe(self) -> ProbeSet:
        if self._probe is None:
            from tradelab.evaluation.holdout import holdout_arrays
            from tradelab.loop.probe import build_probe_set
            from tradelab.marketdata import load_market_arrays

            manifest = load_manifest(self.root, self.market)
            arrays = load_market_arrays(self.root, self.market, self.config)
            if data_of(manifest) is not None:
                arrays, holdout = holdout_arrays(self.root, self.market, manifest, arrays)
            else:
                from tradelab.evaluation.starts import Window

                holdout = Window(0, int(arrays.split_index), len(arrays))
            self._probe = build_probe_set(self.root, self.market, self.config, arrays, holdout,
                                          n_prompts=self.settings.probe_prompts, seed=self.config.evaluation.base_seed)
            if len(self._probe) == 0:
                raise StageNotReady(f"{self.market}: the holdout is too short for one probe prompt; generate more "
                                    "days (e.g. `data generate --days 60`)")
        return self._probe

    def _answers(self, model: AdvisorModel) -> list[str]:
        from tradelab.advisor.generate import Advisor

        if self._advisor is None or model.base != self._base:
            self._advisor = None  # one base model in memory at a time
            self._advisor = Advisor(model.config_for(self.config), self.root)
            self._base = model.base
        else:
            self._advisor.set_adapter(model.adapter)
        return self._advisor.generate_texts(self.probe().messages, seed=self.config.app.seed)

    def measure(self, model: AdvisorModel, label: str) -> dict[str, Any]:
        """The advisor figures of ``model`` on the holdout prompts; its answers go to ``answers/<label>.jsonl``."""
        from tradelab.loop.probe import score_answers

        texts = self._answers(model)
        figures = score_answers(self.probe(), texts, level=self.config.evaluation.ci_level,
                                seed=self.config.evaluation.base_seed)
        return self._kept(figures, texts, model, label)

    def _kept(self, figures: dict[str, Any], texts: list[str], model: AdvisorModel, label: str) -> dict[str, Any]:
        """The summary figures for the manifest; the per-prompt answers, actions and rewards go to a JSONL."""
        import json

        probe = self.probe()
        rows = [{"bar_index": bar, "timestamp": ctx["timestamp"], "answer": text, "action": action, "reward": reward,
                 "move_points": float(move)}
                for bar, ctx, text, action, reward, move in zip(probe.bar_indices, probe.contexts, texts,
                                                               figures["actions"], figures["rewards"],
                                                               probe.moves_points)]
        path = self.answers_dir / f"{label}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        summary = {k: v for k, v in figures.items() if k not in ("rewards", "actions")}
        ws = Workspace.at(self.root)
        weights = model.adapter if model.adapter is not None else model.base
        return {**summary, "adapter_sha256": sha256_dir(model.adapter) if model.adapter is not None else None,
                "weights_path": ws.record(weights), "answers_path": ws.record(path)}

    def measure_pair(self, before: AdvisorModel, after: AdvisorModel,
                     label: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Figures of ``after``, and how it differs from ``before`` on the same prompts.

        The comparison proves the second advisor reached the probe: the share of changed answers, the paired reward
        gain with a day-block interval, and the mean absolute change in log-probability of ``before``'s own
        answers.
        """
        import numpy as np

        from tradelab.loop.probe import answer_logprobs, day_bootstrap_ci, score_answers

        probe = self.probe()
        level, seed = self.config.evaluation.ci_level, self.config.evaluation.base_seed
        before_texts = self._answers(before)
        before_figures = score_answers(probe, before_texts, level=level, seed=seed)
        before_logp = answer_logprobs(self._advisor, probe.messages, before_texts)
        after_texts = self._answers(after)
        after_figures = score_answers(probe, after_texts, level=level, seed=seed)
        after_logp = answer_logprobs(self._advisor, probe.messages, before_texts)
        gain = np.asarray(after_figures["rewards"]) - np.asarray(before_figures["rewards"])
        interval = day_bootstrap_ci(gain, probe.session_ids, level=level, seed=seed)
        shift = np.abs(np.asarray(after_logp) - np.asarray(before_logp))
        same = before.base == after.base and before.adapter is not None and after.adapter is not None \
            and sha256_dir(before.adapter) == sha256_dir(after.adapter)
        comparison = {
            "reward_gain": float(gain.mean()),
            "reward_gain_ci": [float(interval[0]), float(interval[1])] if interval else None,
            "answers_changed": float(np.mean([a != b for a, b in zip(after_texts, before_texts)])),
            "logprob_shift_mean": float(np.nanmean(shift)) if shift.size else None,
            "same_adapter": same,
        }
        return self._kept(after_figures, after_texts, after, label), comparison


def _write(root: str | Path, market: str, config: TradelabConfig,
           state: LoopSection) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the loop report; returns it and its paths as recorded in the manifest (workspace-relative)."""
    ws = Workspace.at(root)
    report_dir = ws.resolve(state.report_dir)
    assert report_dir is not None
    report, paths = loop_report.write_loop_report(report_dir, market, config, state)
    return report, {kind: ws.record(path) or path for kind, path in paths.items()}
