"""Stage 2 entry point: export the datasets, preflight, then run the chosen engine.

The runner is the same for every engine: the engine gives its plan (an external launch) or none (in-process), its
command, and its run, which ends in a completed :class:`~tradelab.manifest_schema.RunRecord` naming the weights the
next Stage 1 and evaluation load (:mod:`tradelab.grpo.engines.interface`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tradelab.config import TradelabConfig
from tradelab.errors import PreflightError
from tradelab.grpo import DEFAULT_ENGINE
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import RunRequest
from tradelab.grpo.engines.registry import get_engine
from tradelab.paths import Workspace
from tradelab.results import DatasetResult, Stage2Result

__all__ = ["build_plan", "run_stage2"]

LineSink = Callable[[str], None]


def build_plan(root: str | Path, market: str, config: TradelabConfig, *, engine: str, python: str | None = None,
               extra_overrides: list[str] | None = None) -> base.LaunchPlan | None:
    """The launch plan of ``engine`` (None for an in-process engine), from the engine registry."""
    return get_engine(engine).build_plan(root, market, config, python=python, extra_overrides=extra_overrides)


def run_stage2(
    root: str | Path, market: str, config: TradelabConfig, *, engine: str = DEFAULT_ENGINE,
    dataset_only: bool = False, dry_run: bool = False, mode: str | None = None,
    resume_from: str | Path | None = None, python: str | None = None, extra_overrides: list[str] | None = None,
    on_line: LineSink | None = None, progress: Callable[[int, int], None] | None = None,
) -> Stage2Result:
    """Export, preflight and (unless dataset-only or dry-run) train with ``engine``.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration.
        engine: A name of :data:`tradelab.grpo.ENGINES`.
        dataset_only: Export and preflight (without GPU checks) only; a failing preflight is reported, not raised.
        dry_run: Export, preflight and return the exact command; launch nothing.
        mode: Rollout mode for an engine that has several (the local engine's soft / discrete); None = config.
        resume_from: A checkpoint to continue (the local engine).
        python: Launch interpreter override (else ``runner.python``).
        extra_overrides: Hydra overrides added after the config's (same key replaces).
        on_line: Receives each line of an external engine's output.
        progress: In-process engine step callback.

    Returns:
        The export and preflight report; the command unless ``dataset_only``; the completed run unless ``dry_run``.

    Raises:
        PreflightError: A preflight check failed (not in dry-run or dataset-only mode).
        StageFailed: The engine failed or left no usable weights; the attempt is recorded with its log.
        WorkspaceError: Another process is writing this market (the market lock).
    """
    from tradelab.attempts import market_writer

    what = "stage2 export" if dataset_only else f"stage2 {engine}" + (" (dry run)" if dry_run else "")
    with market_writer(root, market, what):
        return _run_stage2(root, market, config, engine=engine, dataset_only=dataset_only,
                           dry_run=dry_run, mode=mode, resume_from=resume_from, python=python,
                           extra_overrides=extra_overrides, on_line=on_line, progress=progress)


def _run_stage2(
    root: str | Path, market: str, config: TradelabConfig, *, engine: str, dataset_only: bool,
    dry_run: bool, mode: str | None, resume_from: str | Path | None, python: str | None,
    extra_overrides: list[str] | None, on_line: LineSink | None, progress: Callable[[int, int], None] | None,
) -> Stage2Result:
    """:func:`run_stage2`'s work, under the market lock."""
    from tradelab.attempts import stage2_attempt
    from tradelab.grpo.dataset import export_dataset
    from tradelab.grpo.preflight import run_preflight
    from tradelab.manifest_schema import RunDataset

    spec = get_engine(engine)
    exported = export_dataset(root, market, config, progress=progress)
    dataset = DatasetResult(counts=exported["counts"], paths=exported["paths"], sha256s=exported["sha256s"],
                            profile=exported["profile"], malformed_lines=exported["malformed_lines"],
                            constant_answers=exported["constant_answers"], train_order=exported["train_order"])
    # Built once: preflight checks this plan and the launch runs it.
    plan = spec.build_plan(root, market, config, python=python, extra_overrides=extra_overrides)
    report = run_preflight(root, market, config, engine=engine, dataset_only=dataset_only, python=python,
                           extra_overrides=extra_overrides, plan=plan)
    result = Stage2Result(dataset=dataset, preflight=report.to_dict())
    if dataset_only:
        return result
    request = RunRequest(dataset=dataset, mode=mode, resume_from=resume_from, on_line=on_line,
                         progress=progress)
    result = result.model_copy(update={"launch": spec.launch(plan, request)})
    if dry_run:
        return result
    if not report.ok:
        raise PreflightError(f"preflight failed for engine {engine} on {market}:\n{report.summary()}\n"
                             f"fix these, or see `python main.py preflight --market {market} --engine {engine}`")
    ws = Workspace.at(root)
    trained_on = RunDataset(paths={k: ws.record(dataset.paths[k]) or dataset.paths[k] for k in ("train", "val")},
                            sha256s={k: dataset.sha256s[k] for k in ("train", "val")})
    with stage2_attempt(root, market, engine, profile=config.profile, dataset=trained_on):
        run = spec.run(ws, market, config, plan, request)
    return result.model_copy(update={"run": run})
