"""The manifest's shape declared once (manifest_schema.py): typed sections for readers, one run-record type for every
engine, and schema-1 / schema-2 files (written as tradelab wrote them) read and migrated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.manifest import (
    RunRecord,
    data_of,
    evaluations_of,
    load_manifest,
    loop_of,
    require_stage1,
    stage1_of,
    stage2_of,
)
from tradelab.manifest_schema import STAGE1_KEYS, Stage1Section
from tradelab.paths import Workspace

FIXTURES = Path(__file__).parent / "fixtures"


def _install(root: Path, name: str) -> dict:
    text = (FIXTURES / name).read_text().replace("@ROOT@", str(root))
    path = Workspace.at(root).manifest_path("NQ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return json.loads(text)


def test_a_schema_2_manifest_reads_unchanged_into_typed_sections(tmp_path: Path) -> None:
    written = _install(tmp_path, "manifest_v2.json")
    loaded = load_manifest(tmp_path, "NQ")
    assert loaded == written, "a current manifest is read as it is, unknown keys included"
    stage1 = stage1_of(loaded)
    assert stage1.status == "interrupted" and stage1.pid == 1234 and stage1.base_model is not None
    assert stage1.last_completed is not None and stage1.last_completed.status == "completed"
    assert data_of(loaded).holdout_start == "2025-01-16T09:30:00-05:00"
    stage2 = stage2_of(loaded)
    assert stage2.dataset is not None and stage2.dataset.counts["train"] == 30
    assert [(r.engine, r.status) for r in stage2.runs] == [("verl", "failed"), ("local", "completed")]
    assert stage2.runs[1].steps_done == 2 and stage2.runs[0].python is None
    assert evaluations_of(loaded)[0].agents == {"ppo": {"sharpe": 0.5}}
    assert loop_of(loaded).status == "completed"
    served = require_stage1(tmp_path, "NQ")  # interrupted: the last completed run serves
    assert served["stage1"] == written["stage1"]["last_completed"]


def test_a_schema_1_manifest_migrates_and_reads_typed(tmp_path: Path) -> None:
    _install(tmp_path, "manifest_v1.json")
    ws = Workspace.at(tmp_path)
    loaded = load_manifest(tmp_path, "NQ")
    v2 = json.loads((FIXTURES / "manifest_v2.json").read_text())
    assert loaded["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION == 2
    stage1 = stage1_of(loaded)
    expected = v2["stage1"]["last_completed"]
    for key in ("model_checkpoint", "vecnormalize_path", "checkpoints_dir", "lora_adapter_path", "experience_path"):
        assert getattr(stage1, key) == expected[key], key  # absolute under the root -> workspace-relative
    assert stage1.base_model.local_path == expected["base_model"]["local_path"]
    assert stage1.pid is None and stage1.last_completed is None, "schema 1 did not record them"
    assert data_of(loaded).bars_path == v2["data"]["bars_path"]
    assert stage2_of(loaded).dataset.paths == v2["stage2"]["dataset"]["paths"]
    assert loaded["stage2"]["preflight"] is None and loop_of(loaded) is None
    assert ws.resolve(stage1.lora_adapter_path) == ws.root / expected["lora_adapter_path"]
    assert require_stage1(tmp_path, "NQ")["stage1"]["status"] == "completed"


@pytest.mark.parametrize("index", [0, 1])
def test_one_run_record_type_keeps_each_engines_keys(index: int) -> None:
    run = json.loads((FIXTURES / "manifest_v2.json").read_text())["stage2"]["runs"][index]
    assert RunRecord.model_validate(run).record() == run
    built = RunRecord(engine=run["engine"], status="running").record()
    assert built == {"engine": run["engine"], "status": "running"}, "only the keys a builder sets are written"
    with pytest.raises(ValueError, match="steps_done"):
        RunRecord.model_validate({**run, "steps_done": "2"})


def test_the_stage1_keys_are_the_models_fields() -> None:
    assert STAGE1_KEYS == tuple(Stage1Section.model_fields)
    from tradelab.stage1.sections import STAGE1_KEYS as written, stage1_section

    assert written == STAGE1_KEYS
    with pytest.raises(ValueError, match="total_timesteps"):
        stage1_section(status="completed", total_timesteps="512")
