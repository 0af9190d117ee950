"""How both external engines run: record the attempt, prepare, launch as a subprocess, export the weights.

Every launch is an argv list (never a shell string) run with the plan's interpreter, working directory and
environment; its output streams line by line to a callback and to ``logs/soft_grpo/<MKT>_<UTC>.log``. The attempt is
appended to ``stage2.runs`` before it starts and completed when it ends, so a crash still leaves a record; it is
``completed`` only when the engine's weights exist, load and are recorded as its ``output``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tradelab.config import TradelabConfig, config_hash
from tradelab.errors import StageFailed
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine, LineSink, RunArgv, RunRequest
from tradelab.manifest import append_run, update_last_run
from tradelab.manifest_schema import OutputKind, RunDataset, RunOutput, RunRecord, Status
from tradelab.paths import Workspace
from tradelab.provenance import utc_now, utc_stamp
from tradelab.results import Launch

SPLITS: tuple[str, ...] = ("train", "val")
"""The dataset files a run trains and validates on (recorded with their hashes)."""


def write_launch_script(plan: base.LaunchPlan) -> Path:
    """``launch.sh`` (environment, cd, command) in the run folder, for running by hand or from a scheduler."""
    from tradelab.fileio import atomic_write_text

    path = plan.output_dir / "launch.sh"
    atomic_write_text(path, plan.launch_script())
    path.chmod(0o755)
    return path


def _die_with_parent() -> None:
    """In the child, before it runs: ask Linux to send it SIGTERM when tradelab's process dies, so a trainer (and
    the GPUs it holds) does not outlive a tradelab process killed with SIGKILL. Elsewhere a no-op."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stream(argv: list[str], cwd: Path, env: dict[str, str], log_file: Path, on_line: LineSink | None) -> int:
    """Run ``argv``, copying each output line to ``log_file`` and ``on_line``; return the exit code. The child is
    ended when this process dies (:func:`_die_with_parent`)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent)
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


class ExternalEngine(Engine):
    """An engine launched as a subprocess from a :class:`~tradelab.grpo.engines.base.LaunchPlan` (verl, the fork).

    Subclasses give the plan (:meth:`build_plan`), the weights a finished run left (:meth:`export_output`) and their
    checks; the run itself is the same for both.
    """

    def launch(self, plan: base.LaunchPlan | None, request: RunRequest) -> Launch:
        """The plan's argv, its shell line, and ``launch.sh`` written beside the outputs."""
        assert plan is not None, f"{self.name} always has a launch plan"
        return Launch(command=list(plan.argv), command_line=plan.command_line(), plan=plan.to_dict(),
                      launch_script=str(write_launch_script(plan)))

    def export_output(self, ws: Workspace, market: str, plan: base.LaunchPlan, run: RunArgv,
                      started_epoch_s: float) -> tuple[Path | None, str | None]:
        """Find, verify and copy a finished run's weights: ``(folder, None)`` or ``(None, why nothing is usable)``."""
        raise NotImplementedError

    def run(self, ws: Workspace, market: str, config: TradelabConfig, plan: base.LaunchPlan | None,
            request: RunRequest) -> RunRecord:
        """Launch the plan and record the attempt; the completed record names the exported weights."""
        assert plan is not None, f"{self.name} always has a launch plan"
        log_file = ws.soft_grpo_log_dir() / f"{market}_{utc_stamp()}.log"
        for folder in (plan.cwd, plan.output_dir, plan.tensorboard_dir, log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        dataset = request.dataset
        record = RunRecord(
            engine=self.name, status="running", command=list(plan.argv), cwd=str(plan.cwd),
            env=dict(plan.env_overrides), log_file=str(log_file), started_at=utc_now(), finished_at=None,
            return_code=None, profile=config.profile, python=plan.python,
            dataset=RunDataset(paths={k: ws.record(dataset.paths[k]) or dataset.paths[k] for k in SPLITS},
                               sha256s={k: dataset.sha256s[k] for k in SPLITS}),
            config_hash=config_hash(config), output_dir=str(plan.output_dir),
            tensorboard_dir=str(plan.tensorboard_dir),
        )
        append_run(ws.root, market, record)
        try:
            prepared = self.prepare(ws, market, plan)
            if prepared is not None:
                with open(log_file, "a", encoding="utf-8") as sink:
                    sink.write(prepared + "\n")
            started_epoch_s = time.time()
            code = stream(plan.argv, plan.cwd, plan.environment(), log_file, request.on_line)
        except BaseException as exc:
            self._finish(ws, market, record, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         error=str(exc)[:500])
            raise
        if code != 0:
            self._finish(ws, market, record, "failed", return_code=code)
            raise StageFailed(f"{plan.engine} exited with code {code}; see the log {log_file} "
                              f"(the attempt is recorded in stage2.runs)")
        folder, note = self.export_output(
            ws, market, plan, lambda argv: stream(argv, plan.cwd, plan.environment(), log_file, request.on_line),
            started_epoch_s)
        if folder is None or note is not None:
            self._finish(ws, market, record, "failed", return_code=code, output_note=note)
            raise StageFailed(f"{plan.engine} exited 0 but left no usable weights: {note}; see {log_file} "
                              f"(the run is recorded as failed)")
        base_model = plan.model_path if self.output_kind == "adapter" else None
        output = output_record(ws, folder, self.output_kind, base_model)
        return self._finish(ws, market, record, "completed", return_code=code, output=output)

    @staticmethod
    def _finish(ws: Workspace, market: str, record: RunRecord, status: Status, **fields: object) -> RunRecord:
        record.status = status
        record.finished_at = utc_now()
        for key, value in fields.items():
            setattr(record, key, value)
        update_last_run(ws.root, market, record)
        return record


def output_record(ws: Workspace, folder: Path, kind: OutputKind, base_model: Path | None) -> RunOutput:
    """The :class:`RunOutput` of a verified weights folder: its path, sha256 and (full model) architectures."""
    import json

    from tradelab.fileio import sha256_dir

    config = folder / "config.json"
    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") \
        if kind == "full_model" and config.is_file() else None
    return RunOutput(kind=kind, path=ws.record(folder) or str(folder), sha256=sha256_dir(folder),
                     base_model_path=ws.record(base_model), architectures=architectures)
