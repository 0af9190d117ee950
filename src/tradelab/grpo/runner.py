"""Stage 2 entry point: export the datasets, preflight, then launch verl / SofT-GRPO (or the local engine).

Every external launch is an argv list (never a shell string) run with the plan's interpreter, working directory and
environment; its output streams line by line to a callback and to ``logs/soft_grpo/<MKT>_<UTC>.log``. Each attempt
is appended to ``stage2.runs`` before it starts and completed when it ends, so a crash still leaves a record.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig, config_hash
from tradelab.errors import PreflightError, StageFailed
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine
from tradelab.grpo.engines.registry import get_engine
from tradelab.grpo.engines.soft_grpo import hf_model_dir
from tradelab.manifest import append_run, update_last_run
from tradelab.paths import Workspace
from tradelab.provenance import utc_now, utc_stamp

__all__ = ["build_plan", "hf_model_dir", "run_stage2", "stream", "write_launch_script"]

log = logging.getLogger(__name__)

LineSink = Callable[[str], None]


def build_plan(root: str | Path, market: str, config: TradelabConfig, *, engine: str, test_mode: bool,
               python: str | None = None, extra_overrides: list[str] | None = None) -> base.LaunchPlan:
    """The launch plan of an external engine ("verl" or "soft-grpo"), from the engine registry."""
    return get_engine(engine).build_plan(root, market, config, test_mode=test_mode, python=python,
                                         extra_overrides=extra_overrides)


def run_stage2(
    root: str | Path, market: str, config: TradelabConfig, *, engine: str = "verl", test_mode: bool = False,
    dataset_only: bool = False, dry_run: bool = False, mode: str | None = None,
    resume_from: str | Path | None = None, python: str | None = None, extra_overrides: list[str] | None = None,
    on_line: LineSink | None = None, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export, preflight and (unless dataset-only or dry-run) train with ``engine``.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration.
        engine: "verl", "soft-grpo" or "local".
        test_mode: Cap the dataset and apply the engine's ``test_overrides`` (local: its test settings).
        dataset_only: Export and preflight (without GPU checks) only; a failing preflight is reported, not raised.
        dry_run: Export, preflight and return the exact command; launch nothing.
        mode: Local engine rollout mode ("soft" / "discrete"); None = config.
        resume_from: Local engine checkpoint to resume from.
        python: Launch interpreter override (else ``runner.python``).
        extra_overrides: Hydra overrides added after the config's (same key replaces).
        on_line: Receives each line of the engine's output.
        progress: Local engine step callback.

    Returns:
        ``{"dataset", "preflight", "plan", "command", "command_line", "run", "log_file"}`` (keys that apply).

    Raises:
        PreflightError: A preflight check failed (not in dry-run or dataset-only mode).
        StageFailed: The engine (or the adapter export) exited non-zero; the attempt is recorded with its log.
    """
    from tradelab.grpo.dataset import export_dataset
    from tradelab.grpo.preflight import run_preflight

    spec = get_engine(engine)
    dataset = export_dataset(root, market, config, test_mode=test_mode, progress=progress)
    # Built once: preflight checks this plan and the launch runs it.
    plan = spec.build_plan(root, market, config, test_mode=test_mode, python=python,
                           extra_overrides=extra_overrides) if spec.external else None
    report = run_preflight(root, market, config, engine=engine, dataset_only=dataset_only,
                           test_mode=test_mode, python=python, extra_overrides=extra_overrides, plan=plan)
    result: dict[str, Any] = {"dataset": _dataset_summary(dataset), "preflight": report.to_dict()}
    if dataset_only:
        return result
    if plan is None:
        return _run_local(root, market, config, result, report, dry_run, mode, test_mode, resume_from, progress)
    result.update(plan=plan.to_dict(), command=list(plan.argv), command_line=plan.command_line(),
                  launch_script=str(write_launch_script(plan)))
    if dry_run:
        return result
    if not report.ok:
        raise PreflightError(f"preflight failed for engine {engine} on {market}:\n{report.summary()}\n"
                             f"fix these, or see `python main.py preflight --market {market} --engine {engine}`")
    result.update(_launch(root, market, config, spec, plan, dataset, test_mode, on_line))
    return result


def write_launch_script(plan: base.LaunchPlan) -> Path:
    """``launch.sh`` (environment, cd, command) in the run folder, for running by hand or from a scheduler."""
    from tradelab.fileio import atomic_write_text

    path = plan.output_dir / "launch.sh"
    atomic_write_text(path, plan.launch_script())
    path.chmod(0o755)
    return path


def _dataset_summary(dataset: dict[str, Any]) -> dict[str, Any]:
    """What the caller shows: counts, where the files went, and their hashes."""
    return {"counts": dataset["counts"], "paths": dataset["paths"], "sha256s": dataset["sha256s"],
            "test_mode": dataset["test_mode"], "malformed_lines": dataset["malformed_lines"]}


def _run_local(root: str | Path, market: str, config: TradelabConfig, result: dict[str, Any], report: Any,
               dry_run: bool, mode: str | None, test_mode: bool, resume_from: str | Path | None,
               progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """The in-process engine; it records its own ``stage2.runs`` entry."""
    from tradelab.grpo.engines.local import ENGINE_SPEC as local

    call = local.call_line(mode, test_mode, resume_from)
    result.update(command=[call], command_line=call)
    if dry_run:
        return result
    if not report.ok:
        raise PreflightError(f"preflight failed for engine local on {market}:\n{report.summary()}")
    result["run"] = local.train(root, market, config, mode=mode, test_mode=test_mode, resume_from=resume_from,
                                progress=progress)
    return result


def _run_record(plan: base.LaunchPlan, dataset: dict[str, Any], config: TradelabConfig, log_file: Path,
                test_mode: bool) -> dict[str, Any]:
    from tradelab.manifest import RunRecord

    splits = ("train", "val")
    return RunRecord(
        engine=plan.engine, status="running", command=list(plan.argv), cwd=str(plan.cwd),
        env=dict(plan.env_overrides), log_file=str(log_file), started_at=utc_now(), finished_at=None,
        return_code=None, test_mode=test_mode, python=plan.python,
        dataset={"paths": {k: dataset["paths"][k] for k in splits},
                 "sha256s": {k: dataset["sha256s"][k] for k in splits}},
        config_hash=config_hash(config), output_dir=str(plan.output_dir),
        tensorboard_dir=str(plan.tensorboard_dir), adapter_path=None,
    ).record()


def stream(argv: list[str], cwd: Path, env: dict[str, str], log_file: Path, on_line: LineSink | None) -> int:
    """Run ``argv``, copying each output line to ``log_file`` and ``on_line``; return the exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1)
        except OSError as exc:
            sink.write(f"cannot start: {exc}\n")
            if on_line:
                on_line(f"cannot start {argv[0]}: {exc}")
            return 127
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                sink.flush()
                if on_line:
                    on_line(line.rstrip("\n"))
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise


def _launch(root: str | Path, market: str, config: TradelabConfig, spec: Engine, plan: base.LaunchPlan,
            dataset: dict[str, Any], test_mode: bool, on_line: LineSink | None) -> dict[str, Any]:
    ws = Workspace.at(root)
    log_file = ws.soft_grpo_log_dir() / f"{market}_{utc_stamp()}.log"
    for folder in (plan.cwd, plan.output_dir, plan.tensorboard_dir, log_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    append_run(ws.root, market, _run_record(plan, dataset, config, log_file, test_mode))
    try:
        prepared = spec.prepare(ws, market, plan)
        if prepared is not None:
            with open(log_file, "a", encoding="utf-8") as sink:
                sink.write(prepared + "\n")
        started_epoch_s = time.time()
        code = stream(plan.argv, plan.cwd, plan.environment(), log_file, on_line)
    except BaseException as exc:
        update_last_run(ws.root, market, {"status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                          "finished_at": utc_now(), "error": str(exc)[:500]})
        raise
    if code != 0:
        update_last_run(ws.root, market, {"status": "failed", "finished_at": utc_now(), "return_code": code})
        raise StageFailed(f"{plan.engine} exited with code {code}; see the log {log_file} "
                          f"(the attempt is recorded in stage2.runs)")
    output, note = spec.export_output(
        ws, market, plan, lambda argv: stream(argv, plan.cwd, plan.environment(), log_file, on_line), started_epoch_s)
    status = "completed" if note is None else "failed"
    key = spec.output_key
    record: dict[str, Any] = {"status": status, "finished_at": utc_now(), "return_code": code,
                              key: str(output) if output else None, "output_note": note}
    if output is not None and note is None:
        from tradelab.grpo.outputs import describe_output

        record["output"] = describe_output(output)
    update_last_run(ws.root, market, record)
    if note is not None:
        raise StageFailed(f"{plan.engine} exited 0 but left no usable weights: {note}; see {log_file} "
                          f"(the run is recorded as failed)")
    return {"log_file": str(log_file), "return_code": code, key: str(output)}
