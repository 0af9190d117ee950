"""The loop closes with the GPU engines: two iterations of ``loop --engine verl`` and ``--engine soft-grpo`` on CPU.

Every stage is real except the GPU training run itself, which a STAND-IN launcher replaces
(``tests/standin_launch.py``, set as ``runner.python``): it writes what verl 0.9.1 and the SofT-GRPO fork write
(verl's ``global_step_N/actor`` checkpoint, merged into ``lora_adapter/`` by the real ``verl.model_merger``; the
fork's ``global_step_N/actor/huggingface/`` written under its own transformers 4.51.1). Around it, tradelab plans,
preflights, merges ``stage1_merged``, records and verifies the output, hands it to the next Stage 1 (an adapter is
continued; a whole model becomes the base with a fresh adapter) and to evaluation's ``hybrid_soft_grpo``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from standin_launch import write_standin_launcher
from fork_env import fork_python

from tradelab import stages
from tradelab.config import TradelabConfig, load_config
from tradelab.fileio import sha256_dir
from tradelab.handoff import FRESH_ADAPTER_DIR, STAGE2_BASES_DIR
from tradelab.loop import api as loop_api
from tradelab.manifest import load_manifest, loop_of, stage1_of, stage2_of
from tradelab.paths import Workspace
from tradelab.stage1.wiring import WARM_ADAPTER_DIR

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = next((p / "shared" / "upstream" / "SofT-GRPO" for p in PROJECT_ROOT.parents
                 if (p / "shared" / "upstream" / "SofT-GRPO" / "verl-0.4.x").is_dir()), None)


def _loop(root: Path, engine: str, launcher: Path) -> dict[str, Any]:
    config = load_config(profile="smoke", overrides={"soft_grpo.runner.python": str(launcher),
                                                     "soft_grpo.preflight.compose_config": False,
                                                     "soft_grpo.preflight.check_artifacts": False})
    return loop_api.loop(root, "NQ", iterations=2, engine=engine, seeds=1, probe_prompts=8, timesteps=256,
                         config=config)


@pytest.fixture()
def workspace(tmp_path: Path, config: TradelabConfig, tiny_advisor_dir: Path, warm_adapter_dir: Path) -> Path:
    root = tmp_path / "ws"
    ws = Workspace.at(root)
    stages.generate_data(root, "NQ", days=20, seed=7, edge=0.5, config=config)
    shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
    shutil.copytree(warm_adapter_dir, ws.market_model_dir("NQ") / WARM_ADAPTER_DIR)
    return root


def _evaluated_weights(root: Path, report_dir: str) -> dict[str, str]:
    report = json.loads((Workspace.at(root).resolve(report_dir) / "report.json").read_text())
    return report["settings"]["adapters"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_loop_with_verl_hands_the_lora_adapter_on(workspace: Path, tmp_path: Path) -> None:
    ws = Workspace.at(workspace)
    result = _loop(workspace, "verl", write_standin_launcher(tmp_path))
    manifest = load_manifest(workspace, "NQ")
    first, second = loop_of(manifest).iterations
    assert all(it.stages == dict.fromkeys(("stage1", "stage2_dataset", "stage2_engine", "evaluation"), "completed")
               for it in (first, second))
    runs = stage2_of(manifest).runs
    assert [(r.engine, r.status, r.output.kind) for r in runs] == [("verl", "completed", "adapter")] * 2
    adapter = ws.soft_grpo_adapter_dir("NQ")
    # The real verl.model_merger wrote lora_adapter/ from the stand-in's checkpoint; it was verified and copied.
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (ws.soft_grpo_output_dir("NQ") / "merged" / "global_step_2" / "lora_adapter").is_dir()
    # Lineage: the adapter Stage 2 handed back is the one the next Stage 1 started from, on the same base.
    assert first.adapter_out_sha256 == runs[0].output.sha256 and first.base_out_sha256 is None
    assert second.adapter_in_sha256 == first.adapter_out_sha256 != first.adapter_stage1_sha256
    assert second.base_in_sha256 == first.base_in_sha256 == sha256_dir(ws.tiny_advisor_dir())
    assert second.adapter_out_sha256 == sha256_dir(adapter)
    assert first.stage2_vs_stage1["logprob_shift_mean"] > 0, "the moved adapter reached the probe"
    # Evaluation's hybrid ran on Stage 2's adapter, hybrid_stage1 on Stage 1's.
    weights = _evaluated_weights(workspace, second.evaluation.report_dir)
    assert weights["hybrid"] == str(adapter) and weights["hybrid_stage1"] == str(ws.stage1_lora_dir("NQ"))
    assert result["report"]["iterations"][1]["stage2_run"]["output_kind"] == "adapter"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_loop_with_the_fork_makes_its_model_the_next_base(workspace: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.at(workspace)
    monkeypatch.setenv("STANDIN_FORK_PYTHON", str(fork_python()))
    repo = tmp_path / "SofT-GRPO-master-main"
    if UPSTREAM is not None:
        shutil.copytree(UPSTREAM, repo)
    else:
        from stage2_factory import fake_soft_grpo_repo

        fake_soft_grpo_repo(repo)
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(repo))
    result = _loop(workspace, "soft-grpo", write_standin_launcher(tmp_path))
    manifest = load_manifest(workspace, "NQ")
    first, second = loop_of(manifest).iterations
    runs = stage2_of(manifest).runs
    assert [(r.engine, r.status, r.output.kind) for r in runs] == [("soft-grpo", "completed", "full_model")] * 2
    hf_model = ws.soft_grpo_output_dir("NQ") / "hf_model"
    assert json.loads((hf_model / "config.json").read_text())["transformers_version"] == "4.51.1", "the fork wrote it"
    # Lineage: the fork's model became the next Stage 1's base (a stable copy, same sha256), with a fresh adapter.
    assert first.base_out_sha256 == runs[0].output.sha256 and first.adapter_out_sha256 is None
    assert second.base_in_sha256 == first.base_out_sha256 != first.base_in_sha256
    assert Path(second.base_in_path).parent == Path(ws.record(ws.market_model_dir("NQ") / STAGE2_BASES_DIR))
    assert second.adapter_in_path == ws.record(ws.market_model_dir("NQ") / FRESH_ADAPTER_DIR)
    stage1 = stage1_of(manifest)
    assert stage1.base_model.local_path == second.base_in_path and not stage1.base_model.smoke_test_model
    assert second.base_out_sha256 == sha256_dir(hf_model) != first.base_out_sha256
    assert first.stage2_vs_stage1["logprob_shift_mean"] > 0, "the moved model reached the probe"
    # Evaluation's hybrid_soft_grpo loaded the whole model; hybrid_stage1 the adapter on the new base.
    weights = _evaluated_weights(workspace, second.evaluation.report_dir)
    assert weights["hybrid"] == str(hf_model) and weights["hybrid_stage1"] == str(ws.stage1_lora_dir("NQ"))
    assert result["report"]["iterations"][1]["base_in_sha256"] == first.base_out_sha256
