"""The bad-input catalogue: bad flags, files, folders and states through the real CLI (``python main.py`` in a
subprocess), as a demanding user would try them.

For every case: the exit code is the promised one, stderr is one ``error: ...`` line (or nothing, where the input
is tolerated), no traceback reaches the screen, and every file that existed before (workspace and inputs) has the
same sha256 afterwards. New files are allowed only where the case says so (the manifest's ``.bak``, logs, locks and
their owner files under ``locks/``).

Speed: one workspace is prepared per module (generated bars, a Stage 1 as a completed test run leaves it on disk,
experience records) and copied per case; no case trains anything. The subprocesses run two at a time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stage2_factory import fake_stage1, make_record, mixed_records, write_experience

from tradelab.paths import Workspace

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"


@dataclass
class Case:
    """One bad input or fault.

    Attributes:
        name: Test id.
        kind: Class of the fault (counted in the closing note of issue 16).
        argv: Arguments after ``--root <ws>`` (``{ws}``, ``{inputs}`` are filled in).
        rc: Expected exit code.
        says: Fragments the stderr line must contain (empty with ``rc == 0`` means stderr must be empty).
        setup: ``setup(ws, inputs, stack)`` damages the copy before the run (``stack`` keeps contexts open).
        root_arg: False: the case passes its own ``--root`` in ``argv``.
        may_create: Glob patterns (relative to the workspace) of files the run may add or change.
        check: Extra assertion ``check(ws, inputs, proc)`` after the run.
        close_stdout: Close the reading end of stdout at once (``| head -1`` that has already gone).
    """

    name: str
    kind: str
    argv: list[str]
    rc: int
    says: tuple[str, ...] = ()
    setup: Callable[[Path, Path, ExitStack], None] | None = None
    root_arg: bool = True
    may_create: tuple[str, ...] = ()
    check: Callable[[Path, Path, Any], None] | None = None
    close_stdout: bool = False


# --------------------------------------------------------------------------------------------------- setups
def _manifest(ws: Path) -> Path:
    return Workspace.at(ws).manifest_path("NQ")


def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Path, Path, ExitStack], None]:
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        data = json.loads(_manifest(ws).read_text())
        change(data)
        _manifest(ws).write_text(json.dumps(data))

    return setup


def _raw_manifest(payload: bytes) -> Callable[[Path, Path, ExitStack], None]:
    return lambda ws, inputs, stack: _manifest(ws).write_bytes(payload)


def _config_copy(ws: Path, file: str, old: str, new: str) -> None:
    folder = ws / "config"
    if not folder.exists():
        shutil.copytree(REPO / "config", folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{file} has no {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _config_edit(file: str, old: str, new: str) -> Callable[[Path, Path, ExitStack], None]:
    return lambda ws, inputs, stack: _config_copy(ws, file, old, new)


def _non_utf8_config(ws: Path, inputs: Path, stack: ExitStack) -> None:
    _config_copy(ws, "app.yaml", "seed:", "seed:")
    path = ws / "config" / "app.yaml"
    path.write_bytes(path.read_bytes().replace(b"#", b"# caf\xe9", 1))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _killed_running(keep_previous: bool) -> Callable[[Path, Path, ExitStack], None]:
    def change(data: dict) -> None:
        previous = dict(data["stage1"])
        data["stage1"] = {**previous, "status": "running", "pid": _dead_pid(), "host": socket.gethostname(),
                          "last_completed": previous if keep_previous else None}

    return _edit_manifest(change)


def _hold_market_lock(stage: str) -> Callable[[Path, Path, ExitStack], None]:
    """This test process holds NQ's writer lock (as ``stage``) while the case runs."""

    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        from tradelab.runlock import market_lock

        stack.enter_context(market_lock(ws, "NQ", stage))

    return setup


def _stale_lock_owner(ws: Path, inputs: Path, stack: ExitStack) -> None:
    """The owner file a writer killed with SIGKILL leaves beside NQ's lock."""
    from tradelab.fileio import atomic_write_json
    from tradelab.runlock import owner_path

    atomic_write_json(owner_path(ws, "NQ"), {
        "pid": _dead_pid(), "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00Z", "proc_start": None,
        "token": "killed", "stage": "loop", "command": "python main.py loop --market NQ --iterations 2"})


def _killed_stage2_run(ws: Path, inputs: Path, stack: ExitStack) -> None:
    _edit_manifest(lambda m: m["stage2"]["runs"].append({
        "engine": "local", "status": "running", "started_at": "2026-01-01T00:00:00Z", "pid": _dead_pid(),
        "host": socket.gethostname(), "lock_token": "killed"}))(ws, inputs, stack)


def _killed_loop(ws: Path, inputs: Path, stack: ExitStack) -> None:
    _edit_manifest(lambda m: m.update(loop={
        "status": "running", "settings": {"iterations": 1, "engine": "local", "seeds": 1, "profile": "smoke",
                                          "probe_prompts": 4},
        "report_dir": "reports/NQ/loop_20260101T000000Z", "activity": "iteration 1 stage2_engine",
        "iterations": [{"iteration": 1, "stages": {"stage1": "completed", "stage2_engine": "running"}}],
        "pid": _dead_pid(), "host": socket.gethostname(), "lock_token": "killed"}))(ws, inputs, stack)


def _run_marked_interrupted(ws: Path, inputs: Path, proc: Any) -> None:
    run = json.loads(_manifest(ws).read_text())["stage2"]["runs"][-1]
    assert run["status"] == "interrupted" and "is gone" in run["error"], run


def _loop_marked_interrupted(ws: Path, inputs: Path, proc: Any) -> None:
    loop = json.loads(_manifest(ws).read_text())["loop"]
    assert loop["status"] == "interrupted" and loop["iterations"][0]["stages"]["stage2_engine"] == "interrupted"
    assert "interrupted: 0/1 iterations, at iteration 1 stage2_engine" in proc.stdout, proc.stdout


def _stale_lock_shown(ws: Path, inputs: Path, proc: Any) -> None:
    assert "whose process is gone" in proc.stdout and "python main.py loop" in proc.stdout, proc.stdout


def _stale_lock_taken_over(ws: Path, inputs: Path, proc: Any) -> None:
    from tradelab.runlock import lock_state

    assert lock_state(ws, "NQ").state == "free", "the writer that took the lock over released it"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (self.marker,))


def _planted_pickle(ws: Path, inputs: Path, stack: ExitStack) -> None:
    ppo = Workspace.at(ws).ppo_dir("NQ")
    (ppo / "vecnormalize.npz").unlink()
    (ppo / "vecnormalize.pkl").write_bytes(pickle.dumps(_Payload(inputs / "payload_ran")))


def _tampered_model(ws: Path, inputs: Path, stack: ExitStack) -> None:
    (Workspace.at(ws).ppo_dir("NQ") / "final.zip").write_bytes(b"PK planted model")


def _unrecorded_model(ws: Path, inputs: Path, stack: ExitStack) -> None:
    (Workspace.at(ws).ppo_dir("NQ") / "sha256sums.json").unlink()


def _tampered_checkpoint(ws: Path, inputs: Path, stack: ExitStack) -> None:
    ckpt = Workspace.at(ws).ppo_dir("NQ") / "checkpoints"
    (ckpt / "stage1_000000256_steps.zip").write_bytes(b"PK planted checkpoint")


def _experience(lines: list[str]) -> Callable[[Path, Path, ExitStack], None]:
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        Workspace.at(ws).experience_path("NQ").write_text("".join(line + "\n" for line in lines))

    return setup


def _append_raw(data: bytes) -> Callable[[Path, Path, ExitStack], None]:
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        with open(Workspace.at(ws).experience_path("NQ"), "ab") as fh:
            fh.write(data)

    return setup


def _truncate_experience(ws: Path, inputs: Path, stack: ExitStack) -> None:
    path = Workspace.at(ws).experience_path("NQ")
    path.write_bytes(path.read_bytes()[:-150])


def _replace_with_file(rel: str) -> Callable[[Path, Path, ExitStack], None]:
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        target = ws / rel
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("a file where a folder belongs")

    return setup


def _write_input(name: str, data: bytes | str) -> Callable[[Path, Path, ExitStack], None]:
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        (inputs / name).write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


DATABENTO_HEADER = "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol\n"
DATABENTO_ROWS = "".join(
    f"2024-03-11T13:{30 + i:02d}:00.000000000Z,33,1,42,18000.25,18001.0,17999.5,18000.5,{10 + i},NQH4\n"
    for i in range(5)
)


def _zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _bad_crc_zip(ws: Path, inputs: Path, stack: ExitStack) -> None:
    member = (DATABENTO_HEADER + DATABENTO_ROWS).encode()
    data = bytearray(_zip_bytes({"glbx-mdp3-20240311.ohlcv-1m.csv": member}, zipfile.ZIP_STORED))
    at = bytes(data).index(b"NQH4")
    data[at] = ord("X")  # stored (uncompressed) member: one flipped byte breaks its CRC-32
    (inputs / "crc.zip").write_bytes(bytes(data))


def _zip_bomb(ws: Path, inputs: Path, stack: ExitStack) -> None:
    member = DATABENTO_HEADER.encode() + b"0" * (48 << 20)
    (inputs / "bomb.zip").write_bytes(_zip_bytes({"glbx-mdp3-20240311.ohlcv-1m.csv": member}))


BARS = REPO / "tests" / "fixtures" / "bars"
"""The vendor-layout fixture files (tests/fixtures/bars/render.py)."""


def _central_firstrate(ws: Path, inputs: Path, stack: ExitStack) -> None:
    """The fixture's FirstRate file written in Chicago wall time (an hour behind), as many CME users export."""
    import pandas as pd

    lines = []
    for line in (BARS / "NQ_firstrate.txt").read_text().splitlines():
        stamp, rest = line.split(",", 1)
        local = pd.Timestamp(stamp).tz_localize("America/New_York").tz_convert("America/Chicago")
        lines.append(f"{local:%Y-%m-%d %H:%M:%S},{rest}")
    (inputs / "nq_central.txt").write_text("\n".join(lines) + "\n")


def _fixture_copy(name: str, as_name: str) -> Callable[[Path, Path, ExitStack], None]:
    return lambda ws, inputs, stack: shutil.copyfile(BARS / name, inputs / as_name)


def _one_session(ws: Path, inputs: Path, stack: ExitStack) -> None:
    """ES bars of a single regular session, imported into the workspace (nothing can be held out)."""
    from tradelab.config import load_config
    from tradelab.marketdata import import_market

    rows = "".join(f"2024-03-12 {9 + (30 + m) // 60:02d}:{(30 + m) % 60:02d}:00,5100.25,5101.0,5099.5,5100.5,"
                   f"{900 if m < 390 else 40}\n" for m in range(-20, 400))
    src = inputs / "es_one_day.csv"
    src.write_text("timestamp,open,high,low,close,volume\n" + rows)
    import_market(ws, src, "ES", load_config())


def _stray_folder(ws: Path, inputs: Path, stack: ExitStack) -> None:
    stray = ws / "data" / "nq"
    stray.mkdir(parents=True)
    shutil.copyfile(Workspace.at(ws).bars_path("NQ"), stray / "bars_1m.parquet")


def _gguf_base(name: str, data: Callable[[], bytes] | None) -> Callable[[Path, Path, ExitStack], None]:
    """``llm.model`` set to ``{inputs}/<name>`` holding ``data()`` (nothing: the file does not exist)."""
    def setup(ws: Path, inputs: Path, stack: ExitStack) -> None:
        if data is not None:
            (inputs / name).write_bytes(data())
        _config_copy(ws, "llm.yaml", "model: default", f"model: {inputs / name}")

    return setup


def _wheel_gguf_head(size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        from tradelab.advisor.bases import named_source

        with named_source("smollm2-135m-instruct").path.open("rb") as handle:
            return handle.read(size)

    return read


def _no_base_leftovers(ws: Path, inputs: Path, proc: Any) -> None:
    folder = ws / "models" / "base"
    left = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert all(not name.startswith(".") and not name.startswith(("bad", "cut", "gone")) for name in left), left


def _no_payload(ws: Path, inputs: Path, proc: Any) -> None:
    assert not (inputs / "payload_ran").exists(), "the planted pickle ran its payload"


def _records_file(ws: Path, inputs: Path, stack: ExitStack) -> None:
    """Experience where one record has ``action_taken: "BUY"`` and another ``contract: [1, 2]``."""
    path = Workspace.at(ws).experience_path("NQ")
    path.unlink()
    bad = [{**make_record(90), "action_taken": "BUY"}, {**make_record(91), "contract": [1, 2]}]
    write_experience(ws, [*mixed_records(12), *bad])


def _export_names_bad_lines(ws: Path, inputs: Path, proc: Any) -> None:
    meta = json.loads((Workspace.at(ws).soft_grpo_data_dir("NQ") / "dataset_metadata.json").read_text())
    assert [m["line"] for m in meta["malformed_lines"]] == [13, 14]


def _assert_in(fragment: str, text: str) -> None:
    assert fragment in text, text


MANIFEST = "models/phase3_hybrid/NQ/phase3_stage_manifest.json"
LOCAL_EXPORT = ["stage2", "--market", "NQ", "--dataset-only", "--engine", "local"]
"""An export whose preflight needs no launch interpreter (the verl one composes its config in a subprocess)."""

DATASET_OUTPUTS = ("data/soft_grpo/NQ/stage2_*", "data/soft_grpo/NQ/dataset_metadata.json",
                   "models/phase3_hybrid/NQ/phase3_stage_manifest.json")

# ------------------------------------------------------------------------------------------------------ cases
CASES: list[Case] = [
    # Numeric flags are checked at the boundary with the config's ranges.
    Case("timesteps_negative", "flag", ["stage1", "--market", "NQ", "--timesteps", "-5"], 2, ("--timesteps", "-5")),
    Case("timesteps_zero", "flag", ["stage1", "--market", "NQ", "--timesteps", "0"], 2, ("at least 1",)),
    Case("timesteps_text", "flag", ["stage1", "--market", "NQ", "--timesteps", "lots"], 2, ("not a whole number",)),
    Case("days_huge", "flag", ["data", "generate", "--market", "ES", "--days", "10000000"], 2, ("from 5 to 2000",)),
    Case("days_zero", "flag", ["data", "generate", "--market", "ES", "--days", "0"], 2, ("--days",)),
    Case("seed_negative", "flag", ["data", "generate", "--market", "ES", "--seed", "-1"], 2, ("--seed",)),
    Case("episodes_zero", "flag", ["evaluate", "--market", "NQ", "--episodes", "0"], 2, ("--episodes",)),
    Case("seeds_too_many", "flag", ["evaluate", "--market", "NQ", "--seeds", "1000"], 2, ("from 1 to 100",)),
    Case("engine_unknown", "flag", ["stage2", "--market", "NQ", "--engine", "nope"], 2, ("--engine",)),
    Case("market_path", "flag", ["status", "--market", "../etc"], 2, ("invalid market name",)),
    Case("command_unknown", "flag", ["frobnicate"], 2, ("invalid choice",)),
    # Config: encoding, folder, non-finite numbers, one line.
    Case("config_dir_is_file", "config", ["--config-dir", "{inputs}/cfg.txt", "stage2", "--market", "NQ",
                                          "--dataset-only"], 2, ("is a file",), _write_input("cfg.txt", "x")),
    Case("config_dir_missing", "config", ["--config-dir", "{inputs}/none", "stage2", "--market", "NQ",
                                          "--dataset-only"], 2, ("does not exist",)),
    Case("config_not_utf8", "config", ["stage2", "--market", "NQ", "--dataset-only"], 2, ("app.yaml", "UTF-8"),
         _non_utf8_config),
    Case("config_lr_inf", "config", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("learning_rate", "finite"), _config_edit("ppo.yaml", "learning_rate: ", "learning_rate: .inf #")),
    Case("config_nan", "config", ["stage2", "--market", "NQ", "--dataset-only"], 2, ("gamma", "finite"),
         _config_edit("ppo.yaml", "gamma: ", "gamma: .nan #")),
    Case("config_two_errors_one_line", "config", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("n_stepz", "did you mean"), _config_edit("ppo.yaml", "n_steps:", "n_stepz:")),
    # Workspace folders and files in the way.
    Case("root_is_file_status", "workspace", ["--root", "{inputs}/root.txt", "status"], 2, ("is a file",),
         _write_input("root.txt", "x"), root_arg=False),
    Case("root_is_file_list", "workspace", ["--root", "{inputs}/root.txt", "data", "list"], 2, ("is a file",),
         _write_input("root.txt", "x"), root_arg=False),
    Case("logs_unwritable_status_still_works", "workspace", ["status"], 0, (), _replace_with_file("logs")),
    Case("data_folder_is_file", "workspace", ["data", "generate", "--market", "ES", "--days", "5"], 2,
         ("data/ES", "cannot write"), _replace_with_file("data/ES")),
    Case("model_folder_is_file", "workspace", ["stage1", "--market", "NQ", "--test"], 2,
         ("cannot write", "models/phase3_hybrid/NQ"), _replace_with_file("models/phase3_hybrid/NQ")),
    # The manifest is checked, never trusted blindly; broken ones are kept with a .bak.
    Case("manifest_not_json", "manifest", ["status"], 2, ("not a valid manifest", ".bak"),
         _raw_manifest(b"{not json"), may_create=("**/*.bak",)),
    Case("manifest_not_utf8", "manifest", ["evaluate", "--market", "NQ"], 2, ("utf-8", ".bak"),
         _raw_manifest(b'{"market": "NQ\xff"}'), may_create=("**/*.bak",)),
    Case("manifest_stage2_null", "manifest", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("stage2 is None", ".bak"), _edit_manifest(lambda m: m.update(stage2=None)), may_create=("**/*.bak",)),
    Case("manifest_stage1_text", "manifest", ["evaluate", "--market", "NQ"], 2, ("stage1 is 'done'",),
         _edit_manifest(lambda m: m.update(stage1="done")), may_create=("**/*.bak",)),
    Case("manifest_newer_schema", "manifest", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("schema_version 999", "newer tradelab"), _edit_manifest(lambda m: m.update(schema_version=999))),
    Case("manifest_list", "manifest", ["status", "--market", "NQ"], 2, ("top level is list",),
         _raw_manifest(b"[]"), may_create=("**/*.bak",)),
    Case("manifest_other_market", "manifest", ["status", "--market", "NQ"], 2, ("market is 'ES'",),
         _edit_manifest(lambda m: m.update(market="ES")), may_create=("**/*.bak",)),
    Case("manifest_bad_path_type", "manifest", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("stage1.lora_adapter_path is",), _edit_manifest(lambda m: m["stage1"].update(lora_adapter_path=[1])),
         may_create=("**/*.bak",)),
    # Stage state: stale runs, the lock, completed work not replaced unasked.
    Case("stage1_killed_no_previous", "state", ["evaluate", "--market", "NQ"], 2, ("is gone", "--resume"),
         _killed_running(keep_previous=False), may_create=(MANIFEST,)),
    Case("stage1_lock_held", "state", ["stage1", "--market", "NQ", "--test"], 2,
         ("NQ is busy", "stage1 (pid", "status --market NQ"), _hold_market_lock("stage1")),
    Case("export_while_loop_runs", "state", LOCAL_EXPORT, 2, ("NQ is busy", "loop (pid", "wait for it"),
         _hold_market_lock("loop")),
    Case("evaluate_while_stage2_runs", "state", ["evaluate", "--market", "NQ"], 2, ("NQ is busy", "stage2 local"),
         _hold_market_lock("stage2 local")),
    Case("status_while_loop_runs", "state", ["status", "--market", "NQ"], 0, (), _hold_market_lock("loop"),
         check=lambda ws, inputs, proc: _assert_in("held by loop: pid", proc.stdout)),
    Case("stale_lock_shown_by_status", "state", ["status", "--market", "NQ"], 0, (), _stale_lock_owner,
         check=_stale_lock_shown),
    Case("stale_lock_taken_over", "state", LOCAL_EXPORT, 0, (), _stale_lock_owner, may_create=DATASET_OUTPUTS,
         check=_stale_lock_taken_over),
    Case("stage2_run_killed_marked_by_next_export", "state", LOCAL_EXPORT, 0, (), _killed_stage2_run,
         may_create=DATASET_OUTPUTS, check=_run_marked_interrupted),
    Case("loop_killed_marked_by_status", "state", ["status", "--market", "NQ"], 0, (), _killed_loop,
         may_create=(MANIFEST,), check=_loop_marked_interrupted),
    Case("stage1_shorter_rerun", "state", ["stage1", "--market", "NQ", "--test", "--timesteps", "16"], 2,
         ("512 timesteps", "--force")),
    Case("generate_over_used_bars", "state", ["data", "generate", "--market", "NQ", "--days", "5"], 2,
         ("completed Stage 1", "--force")),
    Case("import_over_used_bars", "state", ["data", "import", "{inputs}/ok.csv", "--market", "NQ"], 2,
         ("completed Stage 1", "--force"), _write_input("ok.csv", DATABENTO_HEADER + DATABENTO_ROWS)),
    # Pickled artifacts load only with their recorded sha256; statistics are npz.
    Case("planted_vecnormalize_pickle", "artifact", ["evaluate", "--market", "NQ", "--adapter", "none"], 2,
         ("vecnormalize.pkl", "no sha256 was recorded"), _planted_pickle, check=_no_payload),
    Case("tampered_final_zip", "artifact", ["evaluate", "--market", "NQ", "--adapter", "none"], 2,
         ("final.zip", "changed since tradelab wrote it"), _tampered_model),
    Case("unrecorded_final_zip", "artifact", ["evaluate", "--market", "NQ", "--adapter", "none"], 2,
         ("final.zip", "no sha256 was recorded"), _unrecorded_model),
    Case("tampered_checkpoint_resume", "artifact", ["stage1", "--market", "NQ", "--test", "--resume"], 2,
         ("stage1_000000256_steps.zip", "changed since"), _tampered_checkpoint),
    # Experience lines: every reader tolerates bad ones; only a file with nothing usable is an error.
    Case("experience_all_malformed", "experience", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("all 2 lines are malformed", "line 1"), _experience(["{oops", "[1, 2]"])),
    Case("experience_missing", "experience", ["stage2", "--market", "NQ", "--dataset-only"], 2,
         ("experience file not found",), lambda ws, inputs, stack: Workspace.at(ws).experience_path("NQ").unlink()),
    Case("experience_truncated_last_line", "experience", LOCAL_EXPORT, 0, (),
         _truncate_experience, may_create=DATASET_OUTPUTS),
    Case("experience_wrong_types", "experience", LOCAL_EXPORT, 0, (),
         _records_file, may_create=DATASET_OUTPUTS, check=_export_names_bad_lines),
    Case("experience_bad_utf8_line", "experience", LOCAL_EXPORT, 0, (),
         _append_raw(b"\xff\xfe{}\n"), may_create=DATASET_OUTPUTS),
    Case("setaside_ledger_damaged", "experience", LOCAL_EXPORT, 2,
         ("stage1_experience.setaside.json", "not a readable set-aside ledger"),
         lambda ws, inputs, stack: (Workspace.at(ws).soft_grpo_data_dir("NQ") / "stage1_experience.setaside.json")
         .write_text("{oops")),
    # Imports: damaged archives, bombs, empty and mis-encoded files.
    Case("zip_bad_crc", "import", ["data", "import", "{inputs}/crc.zip", "--market", "ES"], 2,
         ("crc.zip", "damaged"), _bad_crc_zip),
    Case("zip_bomb", "import", ["data", "import", "{inputs}/bomb.zip", "--market", "ES"], 2,
         ("bomb.zip", "inflates to"), _zip_bomb),
    Case("zip_not_a_zip", "import", ["data", "import", "{inputs}/x.zip", "--market", "ES"], 2,
         ("not a readable zip",), _write_input("x.zip", b"plain text")),
    Case("zip_without_ohlcv", "import", ["data", "import", "{inputs}/other.zip", "--market", "ES"], 2,
         ("ohlcv-1m.csv",), _write_input("other.zip", _zip_bytes({"readme.txt": b"hi"}))),
    Case("csv_header_only", "import", ["data", "import", "{inputs}/empty.csv", "--market", "ES"], 2,
         ("header but no data rows",), _write_input("empty.csv", "timestamp,open,high,low,close,volume\n")),
    Case("databento_header_only", "import", ["data", "import", "{inputs}/x.ohlcv-1m.csv", "--market", "ES"], 2,
         ("header but no data rows",), _write_input("x.ohlcv-1m.csv", DATABENTO_HEADER)),
    Case("csv_not_utf8", "import", ["data", "import", "{inputs}/latin.csv", "--market", "ES"], 2, ("UTF-8",),
         _write_input("latin.csv", b"timestamp,open,high,low,close,volume,caf\xe9\n")),
    Case("csv_text_price", "import", ["data", "import", "{inputs}/t.csv", "--market", "ES"], 2,
         ("'close'", "not a number"),
         _write_input("t.csv", "timestamp,open,high,low,close,volume\n2024-03-11 09:30,1,2,0.5,abc,3\n")),
    Case("import_missing_file", "import", ["data", "import", "{inputs}/nope.csv", "--market", "ES"], 2,
         ("no such file",)),
    Case("import_unknown_layout", "import", ["data", "import", "{inputs}/bars.txt", "--market", "ES"], 2,
         ("cannot tell the bar layout", "'x'", "--format"), _write_input("bars.txt", "x")),
    # Real layouts: the clock and the calendar are checked, never guessed silently.
    Case("import_central_time_as_eastern", "import", ["data", "import", "{inputs}/nq_central.txt", "--market", "ES"],
         2, ("America/Chicago wall time", "--timezone America/Chicago", "--force-timezone", "Nothing was written"),
         _central_firstrate),
    Case("import_end_stamps_read_as_starts", "import", ["data", "import", "{inputs}/nt.txt", "--market", "ES",
                                                       "--stamp", "start"], 2,
         ("bar-end stamps", "--stamp end"), _fixture_copy("NQ 12-23.Last.txt", "nt.txt")),
    Case("import_timezone_unknown", "flag", ["data", "import", "{inputs}/nt.txt", "--market", "ES", "--timezone",
                                             "Mars/Olympus"], 2, ("--timezone", "Mars/Olympus", "IANA"),
         _fixture_copy("NQ 12-23.Last.txt", "nt.txt")),
    Case("import_format_unknown", "flag", ["data", "import", "{inputs}/nt.txt", "--market", "ES", "--format",
                                           "excel"], 2, ("--format", "invalid choice"),
         _fixture_copy("NQ 12-23.Last.txt", "nt.txt")),
    Case("import_session_unknown", "flag", ["data", "import", "{inputs}/nt.txt", "--market", "ES", "--session",
                                            "night"], 2, ("--session", "invalid choice"),
         _fixture_copy("NQ 12-23.Last.txt", "nt.txt")),
    Case("import_wrong_format_flag", "import", ["data", "import", "{inputs}/fr.txt", "--market", "ES", "--format",
                                                "ninjatrader"], 2, ("fr.txt", "line 1", "not a time like"),
         _fixture_copy("NQ_firstrate.txt", "fr.txt")),
    Case("stage1_one_session", "state", ["stage1", "--market", "ES", "--test"], 2,
         ("one session", "Stage 1 needs at least 2 sessions", "held out"), _one_session,
         may_create=("models/phase3_hybrid/ES/**",)),
    Case("evaluate_walk_forward_too_many_folds", "state", ["evaluate", "--market", "NQ", "--walk-forward", "50"], 2,
         ("--walk-forward 50 needs about", "holdout sessions", "purge of", "embargo of")),
    # Base models: a .gguf that is not one, cut short, or missing stops Stage 1 before it writes anything.
    Case("gguf_not_gguf", "model", ["stage1", "--market", "NQ", "--test"], 2, ("bad.gguf", "not a GGUF file"),
         _gguf_base("bad.gguf", lambda: b"these are not the weights you are looking for\n"),
         check=_no_base_leftovers),
    Case("gguf_truncated", "model", ["stage1", "--market", "NQ", "--test"], 2, ("cut.gguf", "truncated"),
         _gguf_base("cut.gguf", _wheel_gguf_head(40_000_000)), check=_no_base_leftovers),
    Case("gguf_missing", "model", ["stage1", "--market", "NQ", "--test"], 2, ("gone.gguf", "no such .gguf file"),
         _gguf_base("gone.gguf", None), check=_no_base_leftovers),
    # Listings and output.
    Case("stray_data_folder", "listing", ["data", "list"], 0, ("warning:", "data/nq"), _stray_folder),
    Case("data_report_wrong_shape", "listing", ["data", "list"], 0, (),
         lambda ws, inputs, stack: Workspace.at(ws).data_report_path("NQ").write_text('{"source": 1, "rows": "9"}')),
    Case("status_into_closed_pipe", "listing", ["status"], 141, (), close_stdout=True),
    Case("status_json_into_closed_pipe", "listing", ["status", "--json"], 141, (), close_stdout=True),
]


# ------------------------------------------------------------------------------------------------- workspace
def _prepare(root: Path) -> None:
    """Generated NQ bars and what a completed Stage 1 test run leaves on disk (model zip hashed, npz statistics,
    a checkpoint, adapter and base-model folders, experience), without training."""
    import numpy as np

    from tradelab.config import load_config
    from tradelab.evaluation.holdout import bar_time
    from tradelab.fileio import sha256_file
    from tradelab.integrity import record_sha256
    from tradelab.manifest import merge_stage1, set_section
    from tradelab.marketdata import generate_market, load_market_arrays
    from tradelab.stage1.vecnorm import STATS_FORMAT

    config = load_config()
    generate_market(root, "NQ", config, days=30, seed=7)
    ws = Workspace.at(root)
    arrays = load_market_arrays(root, "NQ", config)
    set_section(root, "NQ", "data", {
        "bars_path": "data/NQ/bars_1m.parquet", "sha256": sha256_file(ws.bars_path("NQ")), "rows": len(arrays),
        "train_end": bar_time(arrays, arrays.split_index - 1), "holdout_start": bar_time(arrays, arrays.split_index),
    })
    fake_stage1(root)
    write_experience(root, mixed_records(12))
    ppo = ws.ppo_dir("NQ")
    (ppo / "checkpoints").mkdir(parents=True)
    for path in (ppo / "final.zip", ppo / "checkpoints" / "stage1_000000256_steps.zip"):
        path.write_bytes(b"PK stand-in model zip")
        record_sha256(path)
    stats = {"format": np.array(STATS_FORMAT), "obs_mean": np.zeros(4), "obs_var": np.ones(4),
             "obs_count": np.array(10.0), "ret_mean": np.array(0.0), "ret_var": np.array(1.0),
             "ret_count": np.array(10.0), "obs_low": np.full(4, -np.inf, np.float32),
             "obs_high": np.full(4, np.inf, np.float32), "obs_dtype": np.array("<f4"), "action_n": np.array(6),
             "clip_obs": np.array(10.0), "clip_reward": np.array(10.0), "gamma": np.array(0.99),
             "epsilon": np.array(1e-8), "norm_obs": np.array(True), "norm_reward": np.array(False),
             "slot_size": np.array(2)}
    for path in (ppo / "vecnormalize.npz", ppo / "checkpoints" / "stage1_000000256_steps_vecnormalize.npz"):
        np.savez(path, **stats)
    merge_stage1(root, "NQ", {"profile": "smoke", "total_timesteps": 512, "completed_at": "2026-01-01T00:00:00Z",
                              "model_checkpoint": "models/phase3_hybrid/NQ/ppo/final.zip",
                              "lora_adapter_path": "models/phase3_hybrid/NQ/stage1_lora",
                              "base_model": {"name": "fake", "local_path": "models/base/fake-base",
                                             "smoke_test_model": True}})


def _hashes(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _allowed(path: str, ws: Path, case: Case) -> bool:
    rel = Path(path).relative_to(ws) if path.startswith(str(ws)) else None
    if rel is None:
        return False
    if rel.parts[0] in ("logs", "locks") or rel.name.endswith(".lock"):
        return True
    return any(rel.match(pattern) for pattern in case.may_create)


def _run(case: Case, ws: Path, inputs: Path) -> subprocess.CompletedProcess:
    argv = [a.format(ws=ws, inputs=inputs) for a in case.argv]
    cmd = [sys.executable, str(MAIN), *(["--root", str(ws)] if case.root_arg else []), *argv]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO / "src")}
    if not case.close_stdout:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, "", err)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Path, Path, Any, dict, dict]]:
    """Every case run once: prepare one workspace, copy it per case, damage, snapshot, run two at a time."""
    base = tmp_path_factory.mktemp("catalogue")
    prepared = base / "prepared"
    _prepare(prepared)
    jobs = []
    with ExitStack() as stack:
        for case in CASES:
            ws, inputs = base / case.name / "ws", base / case.name / "inputs"
            shutil.copytree(prepared, ws)
            inputs.mkdir()
            if case.setup:
                case.setup(ws, inputs, stack)
            jobs.append((case, ws, inputs, _hashes(ws, inputs)))
        with ThreadPoolExecutor(max_workers=2) as pool:
            procs = list(pool.map(lambda job: _run(job[0], job[1], job[2]), jobs))
    return {case.name: (case, ws, inputs, proc, before, _hashes(ws, inputs))
            for (case, ws, inputs, before), proc in zip(jobs, procs)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_bad_input(results: dict, name: str) -> None:
    case, ws, inputs, proc, before, after = results[name]
    shown = f"rc={proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
    assert proc.returncode == case.rc, shown
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, shown
    lines = proc.stderr.strip().splitlines()
    if case.says:
        assert len(lines) == 1, shown
        assert lines[0].startswith("error:" if case.rc else "warning:"), shown
        for fragment in case.says:
            assert fragment.lower() in lines[0].lower(), f"{fragment!r} missing\n{shown}"
    else:
        assert lines == [], shown
    changed = [p for p, h in before.items() if after.get(p) != h and not _allowed(p, ws, case)]
    assert not changed, f"files changed or removed: {changed}\n{shown}"
    added = [p for p in after if p not in before and not _allowed(p, ws, case)]
    assert not added, f"files added: {added}\n{shown}"
    if case.check:
        case.check(ws, inputs, proc)


def test_the_catalogue_is_large_and_covers_every_class() -> None:
    kinds: dict[str, int] = {}
    for case in CASES:
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert set(kinds) == {"flag", "config", "workspace", "manifest", "state", "artifact", "experience", "import",
                          "listing", "model"}
