"""``run_loop``: Stage 1 -> Stage 2 dataset -> Stage 2 engine -> evaluation, K times, measured on one holdout.

Iteration 1 starts Stage 1 from the warm-started advisor and a fresh PPO; every later iteration starts from the
adapter the previous Stage 2 produced and continues the previous PPO checkpoint. After each iteration the advisor is
probed on the same holdout prompts (after Stage 1 and after Stage 2), and every agent is backtested on the holdout.

State lives in the manifest's ``loop`` section, written after every stage, so an interrupted loop resumes at the
iteration and stage where it stopped. The report (``loop_report.json``/``.md``/``.png``) is rewritten after every
iteration, so a long loop can be read while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import StageFailed, StageNotReady
from tradelab.fileio import sha256_dir
from tradelab.manifest import load_manifest, update_manifest
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


@dataclass(frozen=True)
class LoopSettings:
    """What identifies a loop: a resumed loop must have the same settings.

    Attributes:
        iterations: Iterations to run.
        engine: Stage 2 engine (``local``, ``verl`` or ``soft-grpo``).
        seeds: Evaluation seeds per iteration.
        test_mode: Run every stage in test mode.
        probe_prompts: Holdout prompts the advisor is measured on.
        timesteps: Stage 1 timesteps per iteration (None: the config's, test-mode aware).
    """

    iterations: int
    engine: str
    seeds: int
    test_mode: bool
    probe_prompts: int
    timesteps: int | None = None


def run_loop(
    root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, *, restart: bool = False,
    on_event: EventSink | None = None, progress: Progress | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the learning loop and write its report.

    Args:
        root: Workspace root.
        market: Market name (its bars must exist).
        config: The whole config.
        settings: Iterations, engine, seeds, test mode, probe size.
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
    probe_ctx = _ProbeContext(root, market, config, settings, ws.resolve(state["report_dir"]))
    if state.get("warm_start") is None:
        emit("measuring the warm-start advisor on the holdout prompts")
        state["warm_start"] = {"advisor": probe_ctx.measure(probe_ctx.warm_adapter(), "warm_start")}
        _save(root, market, state)
    if state.get("rule_ceiling") is None:  # the most the advisor's figures could reach on these prompts
        from tradelab.loop.power import rule_ceiling

        state["rule_ceiling"] = rule_ceiling(probe_ctx.probe(), level=config.evaluation.ci_level,
                                             seed=config.evaluation.base_seed)
    for number in range(1, settings.iterations + 1):
        iteration = _iteration_state(state, number)
        for stage in LOOP_STAGES:
            if iteration["stages"].get(stage) == "completed":
                emit(f"iteration {number}: {stage} already completed, skipped")
                continue
            emit(f"iteration {number}: {stage}")
            iteration["stages"][stage] = "running"
            _save(root, market, state)
            try:
                run_stage = _STAGES[stage]
                if stage == "evaluation" and ray_address is not None:
                    run_stage = partial(run_stage, ray_address=ray_address)
                run_stage(root, market, config, settings, state, iteration, probe_ctx, progress)
            except BaseException as exc:
                state["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                state["error"] = f"iteration {number} {stage}: {type(exc).__name__}: {exc}"
                _save(root, market, state)
                raise
            iteration["stages"][stage] = "completed"
            _save(root, market, state)
        if number < settings.iterations:  # readable while a long loop runs; the last one is written below
            state["report"] = _write(root, market, config, state)[1]
            _save(root, market, state)
    state["status"] = "completed"
    state["completed_at"] = utc_now()
    report, paths = _write(root, market, config, state)
    state["report"] = paths
    _save(root, market, state)
    return {"report": report, "paths": {kind: str(ws.resolve(path)) for kind, path in paths.items()}}


# ------------------------------------------------------------------------------------------------------ state
def _start_or_resume(root: str | Path, market: str, settings: LoopSettings, restart: bool) -> dict[str, Any]:
    from tradelab.fileio import new_stamped_dir
    from tradelab.marketdata.store import market_origin

    manifest = load_manifest(root, market) or {}
    previous = manifest.get("loop")
    wanted = asdict(settings)
    if previous and previous.get("status") != "completed" and not restart:
        same = {k: v for k, v in previous["settings"].items() if k != "iterations"} == {
            k: v for k, v in wanted.items() if k != "iterations"}
        if not same:
            raise StageNotReady(
                f"{Workspace.at(root).manifest_path(market)}: an unfinished loop has settings {previous['settings']}, "
                f"this call asks for {wanted}; resume it with the same settings or pass --restart to start anew")
        previous["settings"] = wanted
        previous["status"] = "running"
        previous["error"] = None
        log.info("loop for %s resumes (%d iterations recorded)", market, len(previous["iterations"]))
        return previous
    ws = Workspace.at(root)
    return {
        "status": "running", "started_at": utc_now(), "completed_at": None, "settings": wanted,
        "market_origin": market_origin(root, market), "warm_start": None, "iterations": [], "report": None,
        "report_dir": ws.record(new_stamped_dir(ws.reports_dir(market), prefix="loop_")),
    }


def _iteration_state(state: dict[str, Any], number: int) -> dict[str, Any]:
    for iteration in state["iterations"]:
        if iteration["iteration"] == number:
            return iteration
    iteration = {"iteration": number, "stages": {}, "adapter_in_sha256": None, "adapter_in_path": None,
                 "adapter_stage1_sha256": None, "adapter_out_sha256": None, "adapter_out_path": None,
                 "ppo_init": None, "dataset_sha256s": None, "stage2_run": None, "evaluation": None,
                 "advisor_stage1": None, "advisor": None, "stage2_vs_stage1": None}
    state["iterations"].append(iteration)
    return iteration


def _save(root: str | Path, market: str, state: dict[str, Any]) -> None:
    update_manifest(root, market, lambda m: m.__setitem__("loop", state))


def _previous(state: dict[str, Any], iteration: dict[str, Any]) -> dict[str, Any] | None:
    earlier = [it for it in state["iterations"] if it["iteration"] == iteration["iteration"] - 1]
    return earlier[0] if earlier else None


# ------------------------------------------------------------------------------------------------------ stages
def _stage1(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings, state: dict[str, Any],
            iteration: dict[str, Any], probe: _ProbeContext, progress: Progress | None) -> None:
    from tradelab import stages
    from tradelab.loop.power import stage1_records

    ws = Workspace.at(root)
    previous = _previous(state, iteration)
    adapter = ws.resolve(previous["adapter_out_path"]) if previous else None
    init_ppo = ws.ppo_dir(market) / "final.zip" if previous else None
    adapter_in = adapter if adapter is not None else probe.warm_adapter()
    iteration["adapter_in_path"] = ws.record(adapter_in)
    iteration["adapter_in_sha256"] = sha256_dir(adapter_in)
    iteration["ppo_init"] = ws.record(init_ppo)
    summary = stages.stage1(root, market, test_mode=settings.test_mode, timesteps=settings.timesteps,
                            adapter=str(adapter) if adapter else None, init_ppo=init_ppo, config=config,
                            progress=progress)
    lora = ws.stage1_lora_dir(market)
    iteration["adapter_stage1_sha256"] = summary.get("adapter_sha256")
    iteration["stage1"] = {k: summary.get(k) for k in ("timesteps", "experiences", "with_outcome",
                                                        "experience_samples", "config_hash")}
    iteration["stage1"]["records"] = stage1_records(summary.get("llm_stats"))
    iteration["advisor_stage1"] = probe.measure(lora, f"iteration{iteration['iteration']}_stage1")


def _stage2_dataset(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                    state: dict[str, Any], iteration: dict[str, Any], probe: _ProbeContext,
                    progress: Progress | None) -> None:
    from tradelab import stages

    summary = stages.stage2(root, market, engine=settings.engine, test_mode=settings.test_mode, dataset_only=True,
                            config=config)
    iteration["dataset_sha256s"] = summary["dataset"]["sha256s"]
    iteration["dataset_counts"] = summary["dataset"]["counts"]


def _stage2_engine(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                   state: dict[str, Any], iteration: dict[str, Any], probe: _ProbeContext,
                   progress: Progress | None) -> None:
    from tradelab import stages

    summary = stages.stage2(root, market, engine=settings.engine, test_mode=settings.test_mode, config=config,
                            progress=progress)
    ws = Workspace.at(root)
    run = summary.get("run") or {}
    adapter = ws.resolve(run.get("adapter_path"))
    if adapter is None or not (adapter / "adapter_config.json").is_file():
        raise StageFailed(f"stage2 ({settings.engine}) for {market} finished without an adapter at {adapter!r}; "
                          "the loop needs the engine's adapter for the next Stage 1 (see logs/app.log)")
    iteration["adapter_out_path"] = ws.record(adapter)
    iteration["adapter_out_sha256"] = sha256_dir(adapter)
    iteration["stage2_run"] = {k: run.get(k) for k in ("engine", "status", "steps", "val_reward_start",
                                                       "val_reward_end", "run_dir", "group_signal")}
    iteration["advisor"], iteration["stage2_vs_stage1"] = probe.measure_pair(
        ws.stage1_lora_dir(market), adapter, f"iteration{iteration['iteration']}_stage2")


def _evaluation(root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                state: dict[str, Any], iteration: dict[str, Any], probe: _ProbeContext,
                progress: Progress | None, ray_address: str | None = None) -> None:
    from tradelab import stages
    from tradelab.loop.report import agents_from_report

    summary = stages.evaluate(root, market, seeds=settings.seeds, adapter="soft_grpo", config=config,
                              progress=progress, ray=ray_address)
    ws = Workspace.at(root)
    report_dir = ws.resolve(summary["report_dir"])
    figures = agents_from_report(report_dir / "report.json", level=config.evaluation.ci_level,
                                 seed=config.evaluation.base_seed)
    iteration["evaluation"] = {"report_dir": ws.record(report_dir), **figures}


_STAGES: dict[str, Callable[..., None]] = {
    "stage1": _stage1, "stage2_dataset": _stage2_dataset, "stage2_engine": _stage2_engine, "evaluation": _evaluation,
}


# ------------------------------------------------------------------------------------------------------ probing
class _ProbeContext:
    """The holdout prompts (built once) and the advisor that answers them (loaded once, adapters swapped)."""

    def __init__(self, root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                 report_dir: Path) -> None:
        self.root, self.market, self.config, self.settings = root, market, config, settings
        self.answers_dir = report_dir / "answers"
        self._probe: ProbeSet | None = None
        self._advisor: Any = None

    def warm_adapter(self) -> Path:
        """The adapter iteration 1 starts from (``llm.adapter_path``, else the warm start, built if missing)."""
        from tradelab.stage1.wiring import initial_adapter

        return initial_adapter(Workspace.at(self.root).root, self.market, self.config, seed=self.config.app.seed,
                               resume=False)

    def probe(self) -> ProbeSet:
        if self._probe is None:
            from tradelab.evaluation.holdout import holdout_arrays
            from tradelab.loop.probe import build_probe_set
            from tradelab.marketdata import load_market_arrays

            manifest = load_manifest(self.root, self.market) or {}
            arrays = load_market_arrays(self.root, self.market, self.config)
            if manifest.get("data"):
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

    def _answers(self, adapter: Path) -> list[str]:
        from tradelab.advisor.generate import Advisor

        if self._advisor is None:
            self._advisor = Advisor(self.config, self.root, adapter_path=adapter)
        else:
            self._advisor.set_adapter(adapter)
        return self._advisor.generate_texts(self.probe().messages, seed=self.config.app.seed)

    def measure(self, adapter: Path, label: str) -> dict[str, Any]:
        """The advisor figures of ``adapter`` on the holdout prompts; its answers go to ``answers/<label>.jsonl``."""
        from tradelab.loop.probe import score_answers

        texts = self._answers(adapter)
        figures = score_answers(self.probe(), texts, level=self.config.evaluation.ci_level,
                                seed=self.config.evaluation.base_seed)
        return self._kept(figures, texts, adapter, label)

    def _kept(self, figures: dict[str, Any], texts: list[str], adapter: Path, label: str) -> dict[str, Any]:
        """The summary figures for the manifest; the per-prompt answers, actions and rewards go to a JSONL."""
        import json

        from tradelab.fileio import atomic_write_text

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
        recorded = Workspace.at(self.root).record(path)
        return {**summary, "adapter_sha256": sha256_dir(adapter), "answers_path": recorded}

    def measure_pair(self, before: Path, after: Path, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Figures of ``after``, and how it differs from ``before`` on the same prompts.

        The comparison proves the second adapter reached the advisor: the share of changed answers, the paired
        reward gain with a day-block interval, and the mean absolute change in log-probability of ``before``'s own
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
        comparison = {
            "reward_gain": float(gain.mean()),
            "reward_gain_ci": [float(interval[0]), float(interval[1])] if interval else None,
            "answers_changed": float(np.mean([a != b for a, b in zip(after_texts, before_texts)])),
            "logprob_shift_mean": float(np.nanmean(shift)) if shift.size else None,
            "same_adapter": sha256_dir(before) == sha256_dir(after),
        }
        return self._kept(after_figures, after_texts, after, label), comparison


def _write(root: str | Path, market: str, config: TradelabConfig,
           state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the loop report; returns it and its paths as recorded in the manifest (workspace-relative)."""
    from tradelab.loop.report import write_loop_report

    ws = Workspace.at(root)
    report, paths = write_loop_report(ws.resolve(state["report_dir"]), market, config, state)
    return report, {kind: ws.record(path) for kind, path in paths.items()}
