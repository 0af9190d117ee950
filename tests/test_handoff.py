"""What one stage hands the next (tradelab.handoff): Stage 2's output as the advisor evaluation and Stage 1 load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.config import TradelabConfig
from tradelab.errors import StageNotReady
from tradelab.fileio import sha256_dir
from tradelab.handoff import FRESH_ADAPTER_DIR, STAGE2_BASES_DIR, AdvisorModel, stage2_model, stage2_output
from tradelab.manifest_schema import RunOutput, RunRecord
from tradelab.paths import Workspace
from tradelab.stages import with_advisor_adapter


def _record_run(root: Path, output: RunOutput, status: str = "completed") -> None:
    manifest.append_run(root, "NQ", RunRecord(engine="soft-grpo", status=status, output=output))


def test_the_last_completed_run_wins_over_an_adapter_left_on_disk(tmp_path: Path, config: TradelabConfig) -> None:
    ws = Workspace.at(tmp_path)
    assert stage2_output(tmp_path, "NQ", None) is None
    adapter = ws.soft_grpo_adapter_dir("NQ")
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    found = stage2_output(tmp_path, "NQ", None)
    assert found is not None and (found.kind, ws.resolve(found.path)) == ("adapter", adapter)
    full = RunOutput(kind="full_model", path="models/phase3_hybrid/NQ/soft_grpo/hf_model")
    _record_run(tmp_path, full)
    _record_run(tmp_path, RunOutput(kind="adapter", path="elsewhere"), status="failed")  # a failed run hands nothing
    loaded = manifest.load_manifest(tmp_path, "NQ")
    assert stage2_output(tmp_path, "NQ", loaded) == full
    assert stage2_model(tmp_path, "NQ", loaded, config) == AdvisorModel(ws.soft_grpo_output_dir("NQ") / "hf_model", None)


def test_stage1_from_a_whole_model_adopts_it_as_its_base_with_a_fresh_adapter(
        tmp_path: Path, config: TradelabConfig, tiny_advisor_dir: Path) -> None:
    ws = Workspace.at(tmp_path)
    with pytest.raises(StageNotReady, match="no Stage 2 output"):
        with_advisor_adapter(config, tmp_path, "NQ", "soft_grpo")
    hf_model = ws.soft_grpo_output_dir("NQ") / "hf_model"
    shutil.copytree(tiny_advisor_dir, hf_model)
    _record_run(tmp_path, RunOutput(kind="full_model", path=ws.record(hf_model), sha256=sha256_dir(hf_model)))
    started = with_advisor_adapter(config, tmp_path, "NQ", "soft_grpo")
    digest = sha256_dir(hf_model)
    base = ws.market_model_dir("NQ") / STAGE2_BASES_DIR / digest[:16]
    assert started.llm.model == str(base) and sha256_dir(base) == digest, "a stable copy, the same content"
    fresh = ws.market_model_dir("NQ") / FRESH_ADAPTER_DIR
    assert started.llm.adapter_path == str(fresh)
    from safetensors.torch import load_file

    weights = load_file(str(fresh / "adapter_model.safetensors"))
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    assert lora_b and all(float(t.abs().max()) == 0.0 for t in lora_b), "a fresh adapter leaves the model as it is"
    # The next Stage 2 replaces hf_model/; the base Stage 1 trained on stays.
    (hf_model / "config.json").write_text("{}")
    assert sha256_dir(base) == digest
