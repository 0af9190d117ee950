"""The manifest's shape declared once (manifest_schema.py): typed sections for readers, one run-record type for every
engine, and schema-1 / schema-2 files (written as tradelab wrote them) read and migrated to schema 4."""

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


def _profiles_named(value: object) -> object:
    """``value`` with every old ``test_mode`` flag as the profile it ran (True: smoke, False: pod)."""
    if isinstance(value, list):
        return [_profiles_named(v) for v in value]
    if isinstance(value, dict):
        return {("profile" if k == "test_mode" else k): (("smoke" if v is True else "pod") if k == "test_mode"
                                                          else _profiles_named(v)) for k, v in value.items()}
    return value


def test_a_schema_2_manifest_migrates_into_typed_sections(tmp_path: Path) -> None:
    written = _install(tmp_path, "manifest_v2.json")
    assert '"test_mode"' in json.dumps(written)
    loaded = load_manifest(tmp_path, "NQ")
    assert loaded["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION == 4
    assert {k: v for k, v in loaded.items() if k not in ("schema_version", "stage2")} == {
        k: _profiles_named(v) for k, v in written.items() if k not in ("schema_version", "stage2")}, (
        "only the runs and the profile names change")
    assert '"test_mode"' not in json.dumps(loaded)
    assert stage1_of(loaded).profile == "smoke" == stage1_of(loaded).last_completed.profile
    assert loop_of(loaded).settings.profile == "smoke" and evaluations_of(loaded)[0].profile == "smoke"
    assert stage2_of(loaded).dataset.profile == "smoke" and stage2_of(loaded).runs[1].profile == "smoke"
    stage1 = stage1_of(loaded)
    assert stage1.status == "interrupted" and stage1.pid == 1234 and stage1.base_model is not None
    assert stage1.last_completed is not None and stage1.last_completed.status == "completed"
    assert data_of(loaded).holdout_start == "2025-01-16T09:30:00-05:00"
    stage2 = stage2_of(loaded)
    assert stage2.dataset is not None and stage2.dataset.counts["train"] == 30
    assert [(r.engine, r.status) for r in stage2.runs] == [("verl", "failed"), ("local", "completed")]
    assert stage2.runs[1].steps_done == 2 and stage2.runs[0].python is None
    # Schema 2's adapter_path became the completed run's typed output; the failed run names none.
    assert stage2.runs[0].output is None and "adapter_path" not in loaded["stage2"]["runs"][0]
    assert stage2.runs[1].output.kind == "adapter" and stage2.runs[1].output.path == "/w/adapter"
    assert stage2.last_output() == stage2.runs[1].output
    assert evaluations_of(loaded)[0].agents == {"ppo": {"sharpe": 0.5}}
    assert loop_of(loaded).status == "completed" and loop_of(loaded).settings.engine == "local"
    served = require_stage1(tmp_path, "NQ")  # interrupted: the last completed run serves
    assert served["stage1"] == _profiles_named(written["stage1"]["last_completed"])


def test_a_schema_2_fork_run_becomes_a_full_model_output() -> None:
    v2 = json.loads((FIXTURES / "manifest_v2.json").read_text())
    run = {**v2["stage2"]["runs"][0], "engine": "soft-grpo", "status": "completed", "adapter_path": None,
           "hf_model_path": "models/phase3_hybrid/NQ/soft_grpo/hf_model",
           "output": {"path": "x", "sha256": "f" * 64, "architectures": ["LlamaForCausalLM"]}}
    migrated = manifest.migrate({**v2, "stage2": {**v2["stage2"], "runs": [run]}}, Workspace.at("/w"))
    output = stage2_of(migrated).runs[0].output
    assert (output.kind, output.path, output.sha256) == ("full_model", run["hf_model_path"], "f" * 64)
    assert output.architectures == ["LlamaForCausalLM"] and output.base_model_path is None


def test_a_schema_1_manifest_migrates_and_reads_typed(tmp_path: Path) -> None:
    _install(tmp_path, "manifest_v1.json")
    ws = Workspace.at(tmp_path)
    loaded = load_manifest(tmp_path, "NQ")
    v2 = json.loads((FIXTURES / "manifest_v2.json").read_text())
    assert loaded["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION == 4
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


def test_one_run_record_type_keeps_each_engines_keys() -> None:
    v2 = json.loads((FIXTURES / "manifest_v2.json").read_text())
    for run in manifest.migrate(v2, Workspace.at("/w"))["stage2"]["runs"]:
        assert RunRecord.model_validate(run).record() == run
        built = RunRecord(engine=run["engine"], status="running").record()
        assert built == {"engine": run["engine"], "status": "running"}, "only the keys a builder sets are written"
        with pytest.raises(ValueError, match="steps_done"):
            RunRecord.model_validate({**run, "steps_done": "2"})
    with pytest.raises(ValueError, match="kind"):
        RunRecord.model_validate({"engine": "verl", "status": "completed", "output": {"kind": "lora", "path": "a"}})


def test_the_stage1_keys_are_the_models_fields() -> None:
    assert STAGE1_KEYS == tuple(Stage1Section.model_fields)
    from tradelab.stage1.sections import STAGE1_KEYS as written, stage1_section

    assert written == STAGE1_KEYS
    with pytest.raises(ValueError, match="total_timesteps"):
        stage1_section(status="completed", total_timesteps="512")
