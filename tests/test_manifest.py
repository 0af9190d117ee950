"""The manifest module: atomic saves under a lock, append-only runs, corrupt files never overwritten."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.errors import DataError, StageNotReady
from tradelab.paths import Workspace


def test_new_manifest_round_trip(tmp_path: Path) -> None:
    assert manifest.load_manifest(tmp_path, "NQ") is None
    manifest.set_section(tmp_path, "NQ", "data", {"rows": 10})
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running"})
    manifest.merge_stage1(tmp_path, "NQ", {"status": "completed", "seed": 3})
    m = manifest.load_manifest(tmp_path, "NQ")
    assert m["data"] == {"rows": 10}
    assert m["stage1"] == {"status": "completed", "seed": 3}
    assert m["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION and m["market"] == "NQ"
    assert m["stage2"] == {"dataset": None, "preflight": None, "runs": []}


def test_runs_append_and_update_last(tmp_path: Path) -> None:
    manifest.append_run(tmp_path, "NQ", manifest.RunRecord(engine="verl", status="running"))
    last = manifest.RunRecord(engine="local", status="running")
    manifest.append_run(tmp_path, "NQ", last)
    last.status, last.return_code = "failed", 3
    manifest.update_last_run(tmp_path, "NQ", last)
    runs = manifest.stage2_of(manifest.load_manifest(tmp_path, "NQ")).runs
    assert [r.engine for r in runs] == ["verl", "local"]
    assert runs[0].status == "running" and runs[1].record() == {"engine": "local", "status": "failed", "return_code": 3}


def test_concurrent_appends_are_not_lost(tmp_path: Path) -> None:
    threads = [threading.Thread(target=manifest.append_evaluation,
                                args=(tmp_path, "ES", manifest.EvaluationSummary(report_dir=f"r{i}")))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = sorted(int(e.report_dir[1:]) for e in manifest.evaluations_of(manifest.load_manifest(tmp_path, "ES")))
    assert found == list(range(12))


def test_an_undeclared_manifest_key_is_refused_on_write(tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "NQ", {"status": "completed", "error": None})
    before = Workspace.at(tmp_path).manifest_path("NQ").read_bytes()
    with pytest.raises(ValueError, match=r"undeclared manifest keys \['stage1.eror'\]"):
        manifest.merge_stage1(tmp_path, "NQ", {"eror": "typo"})
    with pytest.raises(ValueError, match=r"stage2.runs.0.note"):
        manifest.append_run(tmp_path, "NQ", manifest.RunRecord(engine="local", status="failed", note="x"))
    with pytest.raises(ValueError, match="stage1.total_timesteps"):
        manifest.merge_stage1(tmp_path, "NQ", {"total_timesteps": "512"})
    assert Workspace.at(tmp_path).manifest_path("NQ").read_bytes() == before, "nothing was written"


def test_a_key_an_older_version_wrote_is_kept_not_refused(tmp_path: Path) -> None:
    written = {**manifest.new_manifest("NQ"), "stage1": {"status": "completed", "retired_field": 1}}
    path = Workspace.at(tmp_path).manifest_path("NQ")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(written))
    manifest.merge_stage1(tmp_path, "NQ", {"seed": 4})
    assert manifest.load_manifest(tmp_path, "NQ")["stage1"] == {"status": "completed", "retired_field": 1, "seed": 4}


def test_corrupt_manifest_is_never_overwritten(tmp_path: Path) -> None:
    path = Workspace.at(tmp_path).manifest_path("NQ")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(DataError) as err:
        manifest.merge_stage1(tmp_path, "NQ", {"status": "completed"})
    assert str(path) in str(err.value)
    assert path.read_text() == "{not json"
    assert path.with_name(path.name + ".bak").read_text() == "{not json"


def test_manifest_of_other_market_is_rejected(tmp_path: Path) -> None:
    manifest.set_section(tmp_path, "NQ", "data", {"rows": 1})
    src = Workspace.at(tmp_path).manifest_path("NQ")
    dst = Workspace.at(tmp_path).manifest_path("ES")
    dst.parent.mkdir(parents=True)
    dst.write_text(src.read_text())
    with pytest.raises(DataError, match="market is 'NQ', expected 'ES'"):
        manifest.load_manifest(tmp_path, "ES")


def test_require_stage1_explains_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(StageNotReady, match="stage1 --market NQ --test"):
        manifest.require_stage1(tmp_path, "NQ")
    manifest.merge_stage1(tmp_path, "NQ", {"status": "completed"})
    assert manifest.require_stage1(tmp_path, "NQ")["stage1"]["status"] == "completed"


def test_saved_file_is_valid_json_without_temp_leftovers(tmp_path: Path) -> None:
    manifest.set_section(tmp_path, "NQ", "data", {"rows": 2})
    folder = Workspace.at(tmp_path).market_model_dir("NQ")
    assert json.loads((folder / "phase3_stage_manifest.json").read_text())["data"]["rows"] == 2
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_are_readable_by_others(tmp_path: Path) -> None:
    from tradelab.fileio import atomic_write_text

    path = atomic_write_text(tmp_path / "a.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    atomic_write_text(path, "y")
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == "y"


def test_staged_dir_replaces_only_when_complete(tmp_path: Path) -> None:
    from tradelab.fileio import staged_dir

    target = tmp_path / "adapter"
    with staged_dir(target) as staging:
        (staging / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1" and target.stat().st_mode & 0o777 == 0o755
    with pytest.raises(RuntimeError):
        with staged_dir(target) as staging:
            (staging / "weights").write_text("half")
            raise RuntimeError("crash mid-save")
    assert (target / "weights").read_text() == "v1"
    with staged_dir(target) as staging:
        (staging / "other").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["other"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"], "no staging or old folders left behind"


def test_atomic_path_for_writers_that_need_a_file_name(tmp_path: Path) -> None:
    from tradelab.fileio import atomic_path

    target = tmp_path / "final.zip"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError("disk full")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
