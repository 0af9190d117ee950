"""A full disk and a read-only one at each writing stage: the previous artifacts stay as they were, the run is marked
failed (where the manifest can still be written) with one line on screen, and the next run after the space is
freed succeeds.

The faults are injected at the OS calls Python makes (tests/disk_faults.py explains why that, and not a real small
file system). Each case copies one trained workspace (Stage 1, a local Stage 2 run and an evaluation done), damages
one stage's write through the real CLI (``tradelab.cli.app.main`` in this process), checks what is left, and runs
the stage again without the fault.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from disk_faults import disk_fault
from stage2_factory import make_record, write_experience
from workspace_factory import seeded_workspace

from tradelab import stages
from tradelab.cli.app import main
from tradelab.paths import Workspace
from tradelab.setaside import load_ledger
from tradelab.stage1.experience_count import count_experience_file
from tradelab.stage1.sections import count_experience

STAGE1 = ["stage1", "--market", "NQ", "--test", "--timesteps", "512"]
EXPORT = ["stage2", "--market", "NQ", "--test", "--dataset-only"]
ENGINE = ["stage2", "--market", "NQ", "--test", "--engine", "local"]
EVALUATE = ["evaluate", "--market", "NQ"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, nq_workspace: Path, tiny_advisor_dir: Path,
            warm_adapter_dir: Path) -> Path:
    """A workspace whose Stage 1, local Stage 2 run and evaluation completed (experience appended every 4 records,
    so a Stage 1 appends early in its run)."""
    root = seeded_workspace(tmp_path_factory.mktemp("disk_trained"), nq_workspace, tiny_advisor_dir, warm_adapter_dir,
                            flush_every_records=4)
    for argv in (STAGE1, ENGINE, EVALUATE):
        assert main(["--root", str(root), *argv]) == 0
    return root


def _copy(trained: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(trained, root, symlinks=True)
    return root


def _hashes(root: Path, *relative: str) -> dict[str, str]:
    """sha256 of every file under the given workspace-relative paths."""
    found = {}
    for rel in relative:
        base = root / rel
        for path in sorted([base] if base.is_file() else base.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert found, relative
    return found


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads(Workspace.at(root).manifest_path("NQ").read_text(encoding="utf-8"))


def _fails(root: Path, argv: list[str], capsys: pytest.CaptureFixture[str], says: str, **fault: Any) -> None:
    """Run ``argv`` with the fault: exit 2, one ``error:`` line naming the OS's reason, no traceback."""
    capsys.readouterr()
    with disk_fault(root, **fault) as injected:
        code = main(["--root", str(root), *argv])
    err = capsys.readouterr().err
    assert injected.fired, f"the fault {fault} never fired"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert says in lines[0] and "Traceback" not in err, err


def _succeeds(root: Path, argv: list[str]) -> None:
    assert main(["--root", str(root), *argv]) == 0


STAGE1_OUTPUTS = ("models/phase3_hybrid/NQ/ppo/final.zip", "models/phase3_hybrid/NQ/ppo/vecnormalize.npz",
                  "models/phase3_hybrid/NQ/ppo/sha256sums.json", "models/phase3_hybrid/NQ/stage1_lora")


@pytest.mark.slow
def test_stage1_disk_full_while_appending_experience(trained: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    before = _hashes(root, *STAGE1_OUTPUTS)
    previous = _manifest(root)["stage1"]
    experience = Workspace.at(root).experience_path("NQ")
    size_before = experience.stat().st_size
    _fails(root, STAGE1, capsys, "No space left on device", match="stage1_experience.jsonl", partial=True)
    assert _hashes(root, *STAGE1_OUTPUTS) == before
    failed = _manifest(root)["stage1"]
    assert failed["status"] == "failed" and "No space left" in failed["error"]
    assert failed["last_completed"]["completed_at"] == previous["completed_at"]
    assert failed["experience_from_byte"] == size_before
    assert count_experience_file(experience, update_index=False).malformed == 1  # the half-written line
    # The next run (space freed) completes, and the failed run's records, the half-written line among them, are
    # set aside: they count nowhere.
    _succeeds(root, STAGE1)
    stage1 = _manifest(root)["stage1"]
    assert stage1["status"] == "completed"
    (aside,) = load_ledger(experience).ranges
    assert aside.start_byte == size_before and aside.run_ids == [failed["run_id"]]
    assert count_experience(experience)[0] == stage1["experience_samples"]
    _succeeds(root, EXPORT)
    dataset = _manifest(root)["stage2"]["dataset"]
    assert dataset["counts"]["malformed"] == 0 and dataset["counts"]["set_aside"] >= aside.records


@pytest.mark.slow
def test_stage1_disk_full_while_publishing_keeps_the_previous_model_and_adapter(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    before = _hashes(root, *STAGE1_OUTPUTS)
    # The statistics' temporary file: the model's is written and the adapter staged by then.
    _fails(root, STAGE1, capsys, "No space left on device", match=".vecnormalize.*")
    assert _hashes(root, *STAGE1_OUTPUTS) == before
    assert _manifest(root)["stage1"]["status"] == "failed"
    served = stages.status(root, "NQ")["markets"][0]["stages"]["stage1"]
    assert served.startswith("failed")
    assert not list(Workspace.at(root).ppo_dir("NQ").glob(".*")), "temporary files left in ppo/"


@pytest.mark.slow
def test_stage1_on_a_read_only_disk_is_found_interrupted_and_then_runs(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    before = _hashes(root, *STAGE1_OUTPUTS)
    _fails(root, STAGE1, capsys, "Read-only file system", error=errno.EROFS, match="stage1_experience.jsonl",
           persistent=True)
    assert _hashes(root, *STAGE1_OUTPUTS) == before
    # The manifest could not be written either: the run is still marked running, and the next reader or writer
    # finds its owner gone and marks it interrupted.
    assert _manifest(root)["stage1"]["status"] == "running"
    assert stages.status(root, "NQ")["markets"][0]["stages"]["stage1"].startswith("interrupted: its process")
    _succeeds(root, STAGE1)
    assert _manifest(root)["stage1"]["status"] == "completed"


DATASET = ("data/soft_grpo/NQ/stage2_train.parquet", "data/soft_grpo/NQ/stage2_val.parquet",
           "data/soft_grpo/NQ/stage2_samples.jsonl", "data/soft_grpo/NQ/dataset_metadata.json")


@pytest.mark.slow
@pytest.mark.parametrize("fault, says", [
    ({"match": ".stage2_val.*"}, "No space left on device"),
    ({"match": ".dataset_metadata.*"}, "No space left on device"),
    ({"match": ".stage2_train.*", "error": errno.EROFS, "persistent": True}, "Read-only file system"),
])
def test_export_disk_faults_keep_the_previous_dataset_whole(trained: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str], fault: dict,
                                                           says: str) -> None:
    root = _copy(trained, tmp_path)
    _succeeds(root, EXPORT)
    before, entry = _hashes(root, *DATASET), _manifest(root)["stage2"]["dataset"]
    # New experience, so the export being cut short would write different files than the ones in place.
    write_experience(root, [make_record(i, trend=("up", "down")[i % 2]) for i in range(12)])
    _fails(root, EXPORT, capsys, says, **fault)
    assert _hashes(root, *DATASET) == before and _manifest(root)["stage2"]["dataset"] == entry
    assert not [p.name for p in Workspace.at(root).soft_grpo_data_dir("NQ").iterdir()
                if p.name.startswith((".stage2", ".export", ".dataset"))], "temporary files left"
    _succeeds(root, EXPORT)
    after, previous = _hashes(root, *DATASET), entry
    entry = _manifest(root)["stage2"]["dataset"]
    assert after != before and entry["counts"]["with_outcome"] == previous["counts"]["with_outcome"] + 12
    for split in ("train", "val"):
        assert entry["sha256s"][split] == after[f"data/soft_grpo/NQ/stage2_{split}.parquet"]


@pytest.mark.slow
def test_local_engine_disk_full_while_publishing(trained: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    adapter = "models/phase3_hybrid/NQ/soft_grpo/adapter"
    before = _hashes(root, adapter)
    runs_before = len(_manifest(root)["stage2"]["runs"])
    _fails(root, ENGINE, capsys, "No space left on device", match=".adapter.*")
    assert _hashes(root, adapter) == before
    runs = _manifest(root)["stage2"]["runs"]
    assert len(runs) == runs_before + 1 and runs[-1]["status"] == "failed" and runs[-2]["status"] == "completed"
    _succeeds(root, ENGINE)
    assert _manifest(root)["stage2"]["runs"][-1]["status"] == "completed"
    weights = f"{adapter}/adapter_model.safetensors"
    assert _hashes(root, weights) == {weights: before[weights]}, "the same inputs and seed train the same adapter"


@pytest.mark.slow
def test_evaluation_disk_full_leaves_no_report_and_the_next_one_matches(trained: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    reports = Workspace.at(root).reports_dir("NQ")
    before, summaries = _hashes(root, "reports/NQ"), _manifest(root)["evaluation"]
    _fails(root, EVALUATE, capsys, "No space left on device", match=".trades.jsonl.*")
    assert _hashes(root, "reports/NQ") == before and _manifest(root)["evaluation"] == summaries
    _succeeds(root, EVALUATE)
    evaluations = _manifest(root)["evaluation"]
    assert len(evaluations) == len(summaries) + 1
    new, old = (Workspace.at(root).resolve(e["report_dir"]) for e in (evaluations[-1], evaluations[0]))
    assert (new / "trades.jsonl").read_bytes() == (old / "trades.jsonl").read_bytes()
    # The folder the failed run reserved was swept; every report folder is whole.
    assert sorted(p.name for p in reports.iterdir()) == sorted({new.name, old.name})
