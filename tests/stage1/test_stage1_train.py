"""run_stage1 end to end (tiny): outputs, manifest, adapter refinement, interrupt + resume, HybridAgent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tradelab.errors import StageNotReady
from tradelab.fileio import sha256_dir, sha256_file
from tradelab.integrity import recorded_sha256
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace
from tradelab.stage1.sections import STAGE1_KEYS
from tradelab.stage1.wiring import REFINING_ADAPTER_DIR, WARM_ADAPTER_DIR
from tradelab.stage1.train import run_stage1

pytestmark = pytest.mark.slow
STEPS = 512


RECORDER_WINDOWS: list[int] = []
"""``recent_maxlen`` of every experience recorder the ``trained`` run built."""


@pytest.fixture(scope="module")
def trained(make_root, stage1_config) -> tuple[Path, dict]:
    from tradelab.stage1 import wiring

    root = make_root()
    calls = []
    real_recorder_for = wiring.recorder_for

    def recorder_for(*args, **kwargs):
        RECORDER_WINDOWS.append(kwargs["recent_maxlen"])
        return real_recorder_for(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "recorder_for", recorder_for)
        summary = run_stage1(root, "NQ", stage1_config, total_timesteps=STEPS,
                             progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (STEPS, STEPS)
    return root, summary


def test_the_refinement_window_is_the_profiles(trained, stage1_config) -> None:
    """The recorder keeps the profile's ``stage1.refinement.recent_records`` records, not the full-size count."""
    from tradelab.config import load_config

    window = stage1_config.stage1.refinement.recent_records
    assert window != load_config().stage1.refinement.recent_records
    assert RECORDER_WINDOWS == [window]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_outputs_and_complete_manifest(trained) -> None:
    root, summary = trained
    ws = Workspace.at(root)
    ppo = ws.ppo_dir("NQ")
    assert (ppo / "final.zip").is_file() and (ppo / "vecnormalize.npz").is_file()
    assert sorted(p.name for p in (ppo / "checkpoints").glob("*.zip"))
    assert list(ws.stage1_tensorboard_dir("NQ").rglob("events.out.tfevents*"))
    manifest = load_manifest(root, "NQ")
    stage1 = manifest["stage1"]
    assert set(STAGE1_KEYS) <= set(stage1)
    assert stage1["status"] == "completed" and stage1["total_timesteps"] == STEPS and stage1["profile"] == "smoke"
    missing = [k for k in STAGE1_KEYS if stage1[k] is None and k not in ("last_completed", "error")]
    assert not missing, f"stage1 keys left empty: {missing}"
    assert stage1["last_completed"] is None, "a completed section is itself the last completed run"
    for key in ("model_checkpoint", "vecnormalize_path", "checkpoints_dir", "lora_adapter_path", "experience_path"):
        assert not Path(stage1[key]).is_absolute() and ws.resolve(stage1[key]).exists(), key
    assert stage1["base_model"]["local_path"] == "models/base/tiny-advisor"
    assert manifest["data"]["bars_path"] == "data/NQ/bars_1m.parquet"
    assert stage1["model_sha256"] == recorded_sha256(ppo / "final.zip") == sha256_file(ppo / "final.zip")
    assert set(stage1["base_model"]) == {"name", "local_path", "smoke_test_model", "sha256", "source"}
    assert stage1["base_model"]["sha256"] == sha256_dir(ws.resolve(stage1["base_model"]["local_path"]))
    assert set(stage1["prompts"]) == {"system", "template_hash"}
    assert stage1["adapter_sha256"] == sha256_dir(ws.stage1_lora_dir("NQ"))
    assert set(manifest["data"]) == {"bars_path", "sha256", "rows", "start", "end", "train_end", "holdout_start",
                                     "origin"}
    assert manifest["data"]["origin"] == {"kind": "synthetic", "generator_version": 3, "edge": 0.0, "seed": 7,
                                          "session": "rth"}
    records = [json.loads(x) for x in _lines(ws.experience_path("NQ"))]
    assert stage1["experience_samples"] == len(records) == summary.experiences > 0
    with_outcome = [r for r in records if r["outcome"] is not None]
    assert stage1["experience_with_outcome"] == len(with_outcome) > 0.5 * len(records)
    assert stage1["llm_stats"]["queries"] >= len(records) and stage1["hybrid_stats"]["decisions"] == STEPS
    assert summary.section.record() == {k: v for k, v in stage1.items()}, "the result carries the section written"
    assert summary.timings["total_s"] > 0 and Path(summary.paths.model) == ppo / "final.zip"
    split = manifest["data"]
    assert all(r["bar_index"] + r["forward"]["horizon_bars"] < split["rows"] for r in records)


def test_records_name_the_adapter_that_answered(trained) -> None:
    root, summary = trained
    ws = Workspace.at(root)
    records = [json.loads(x) for x in _lines(ws.experience_path("NQ"))]
    adapters = {r["adapter"]["path"] for r in records}
    assert str(ws.market_model_dir("NQ") / WARM_ADAPTER_DIR) in adapters
    # Refinements go to stage1_lora_refining (stage1_lora is replaced only when the run completes).
    refining = ws.market_model_dir("NQ") / REFINING_ADAPTER_DIR
    assert str(refining) in adapters, "queries after a refinement use the refined adapter"
    assert sha256_dir(refining) == sha256_dir(ws.stage1_lora_dir("NQ")), "the last refinement is published"
    refinements = summary.section.llm_stats["refinements"]
    assert refinements and refinements[0]["examples"] > 0
    memory = summary.memory
    assert memory["process_peak_rss_mb"] >= memory["adapter_training_peak_mb"] > 0
    assert refinements[0]["peak_memory_mb"] > 0


def test_refined_adapter_changed_and_reloads_with_peft(trained) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    root, _ = trained
    ws = Workspace.at(root)
    lora, warm = ws.stage1_lora_dir("NQ"), ws.market_model_dir("NQ") / WARM_ADAPTER_DIR
    refined = load_file(str(lora / "adapter_model.safetensors"))
    original = load_file(str(warm / "adapter_model.safetensors"))
    assert refined.keys() == original.keys()
    assert any(not torch.equal(refined[k], original[k]) for k in refined)
    base = AutoModelForCausalLM.from_pretrained(ws.tiny_advisor_dir(), local_files_only=True)
    model = PeftModel.from_pretrained(base, lora)
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(refined)


def test_hybrid_agent_acts_with_and_without_advisor(trained, stage1_config) -> None:
    from tradelab.env import make_env
    from tradelab.handoff import stage1_model
    from tradelab.stage1.agent import HybridAgent

    root, _ = trained
    for use_advisor in (True, False):
        advisor = stage1_model(root, "NQ", load_manifest(root, "NQ"), stage1_config) if use_advisor else None
        agent = HybridAgent.from_workspace(root, "NQ", stage1_config, advisor=advisor)
        env = make_env("NQ", root, split="holdout", seed=3, config=stage1_config)
        obs, info = env.reset()
        agent.reset()
        advice_seen = []
        for _ in range(40):
            mask = env.action_masks()
            action, advice = agent.act(obs, info, mask)
            assert mask[action]
            advice_seen.append(advice)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        if use_advisor:
            assert advice_seen[0] is not None and {"action", "confidence", "response"} <= set(advice_seen[0])
            assert 1 < sum(a is not None for a in advice_seen) < len(advice_seen)
        else:
            assert all(a is None for a in advice_seen)


def test_interrupted_run_keeps_its_buffer_and_resume_appends(make_root, stage1_config) -> None:
    # Single-action bars ask too, so some records still wait for their forward window when the run is interrupted.
    query = stage1_config.stage1.query.model_copy(update={"skip_single_action": False})
    stage1_config = stage1_config.model_copy(
        update={"stage1": stage1_config.stage1.model_copy(update={"query": query})})
    root = make_root()
    ws = Workspace.at(root)

    def interrupt(done: int, total: int) -> None:
        if done >= 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage1(root, "NQ", stage1_config, total_timesteps=STEPS, progress=interrupt)
    stage1 = load_manifest(root, "NQ")["stage1"]
    assert stage1["status"] == "interrupted"
    before = _lines(ws.experience_path("NQ"))
    assert before and stage1["experience_samples"] == len(before)
    assert any(json.loads(x)["outcome"] is None for x in before), "pending records are flushed with outcome null"
    checkpoints = sorted((ws.ppo_dir("NQ") / "checkpoints").glob("*.zip"))
    assert checkpoints and checkpoints[-1].name == "stage1_000000300_steps.zip"

    # A kill mid-write leaves a partial last line: the resumed run must count past it and append cleanly.
    experience = ws.experience_path("NQ")
    experience.write_bytes(experience.read_bytes()[:-150])
    damaged = _lines(experience)
    summary = run_stage1(root, "NQ", stage1_config, total_timesteps=STEPS, resume=True)
    assert summary.resumed_from.endswith("stage1_000000300_steps.zip")
    assert summary.timesteps >= STEPS
    after = _lines(experience)
    assert len(after) > len(damaged) and after[: len(damaged)] == damaged
    assert all(json.loads(line)["id"] for line in after[len(damaged):]), "no new record is glued to the partial one"
    stage1 = load_manifest(root, "NQ")["stage1"]
    assert stage1["status"] == "completed" and stage1["experience_samples"] == len(after) - 1


def test_a_copied_workspace_uses_its_own_model_and_adapter(trained, tmp_path: Path) -> None:
    import shutil

    from tradelab.grpo.engines.base import stage1_inputs
    from tradelab.stages import status

    root, _ = trained
    copy = tmp_path / "copied"
    shutil.copytree(root, copy)
    inputs = stage1_inputs(copy, "NQ")
    assert inputs.base_model == Workspace.at(copy).tiny_advisor_dir()
    assert inputs.adapter == Workspace.at(copy).stage1_lora_dir("NQ")
    artifacts = {a["name"]: a for a in status(copy, "NQ")["markets"][0]["artifacts"]}
    assert artifacts["ppo_model"]["path"].startswith(str(copy.resolve())) and artifacts["ppo_model"]["exists"]


def test_a_shorter_fresh_run_does_not_replace_a_completed_model(trained, stage1_config) -> None:
    from tradelab.errors import WorkspaceError

    root, _ = trained
    final = Workspace.at(root).ppo_dir("NQ") / "final.zip"
    before, manifest_before = sha256_file(final), load_manifest(root, "NQ")
    with pytest.raises(WorkspaceError, match=rf"{STEPS} timesteps.*one of 64.*--force"):
        run_stage1(root, "NQ", stage1_config, total_timesteps=64)
    assert sha256_file(final) == before
    assert load_manifest(root, "NQ")["stage1"] == manifest_before["stage1"]


@pytest.mark.parametrize("bad", [0, -5])
def test_non_positive_timesteps_are_refused_before_anything_runs(trained, stage1_config, bad: int) -> None:
    from tradelab.errors import ConfigError

    root, _ = trained
    final = Workspace.at(root).ppo_dir("NQ") / "final.zip"
    before = sha256_file(final)
    with pytest.raises(ConfigError, match="at least 1"):
        run_stage1(root, "NQ", stage1_config, total_timesteps=bad, force=True)
    assert sha256_file(final) == before


def test_missing_data_names_the_commands(tmp_path, stage1_config) -> None:
    with pytest.raises(StageNotReady, match="data generate --market NQ.*data import"):
        run_stage1(tmp_path, "NQ", stage1_config)


def test_same_seed_same_rollout(make_root) -> None:
    """Two fresh runs with the same seed take the same actions (their experience records match)."""
    from tradelab.config import load_config

    config = load_config(profile="smoke", overrides={"stage1.refinement.enabled": False})
    firsts = []
    for _ in range(2):
        root = make_root()
        run_stage1(root, "NQ", config, total_timesteps=128)
        records = [json.loads(x) for x in _lines(Workspace.at(root).experience_path("NQ"))]
        firsts.append([(r["bar_index"], r["action_taken"], r["response"]) for r in records])
    assert firsts[0] == firsts[1] and len(firsts[0]) > 4
    assert np.all([a is not None for _, a, _ in firsts[0][:4]])


def test_init_ppo_continues_the_saved_model(trained, stage1_config, tmp_path: Path) -> None:
    """`stage1 --init-ppo`: training starts from the saved weights (not a fresh net) and trains the budget again."""
    import shutil

    import torch
    from sb3_contrib import MaskablePPO

    root, _ = trained
    copy = tmp_path / "continued"
    shutil.copytree(root, copy)
    final = Workspace.at(copy).ppo_dir("NQ") / "final.zip"
    saved = MaskablePPO.load(str(final), device="cpu").policy.state_dict()
    earlier = [json.loads(x) for x in _lines(Workspace.at(copy).experience_path("NQ"))]
    resolved = sum(r["outcome"] is not None for r in earlier)
    window = stage1_config.stage1.refinement.recent_records
    summary = run_stage1(copy, "NQ", stage1_config, total_timesteps=256, init_ppo=final)
    # The refinement window starts with the first run's latest resolved records (stage1.refinement.history: market).
    history = summary.section.llm_stats["refinement_history"]
    assert resolved > 0 and history["malformed"] == 0
    loaded = history["records"]
    assert 0 < loaded <= window and loaded == sum(r["outcome"] is not None for r in earlier[-window:])
    assert summary.section.llm_stats["refinements"][0]["records"] >= loaded
    # The step counter restarts (SB3 rounds the budget up to whole rollouts of n_envs x n_steps = 512).
    assert summary.initialized_from == str(final) and 256 <= summary.timesteps <= STEPS
    continued = MaskablePPO.load(str(final), device="cpu").policy.state_dict()
    fresh_scale = float(torch.cat([p.flatten() for p in saved.values()]).abs().mean())
    moved = max(float((continued[k] - saved[k]).abs().max()) for k in saved)
    # Close to the saved weights (a few updates away), and not the same: it trained from them.
    assert 0.0 < moved < fresh_scale * 10
    drift = float(np.mean([float((continued[k] - saved[k]).abs().mean()) for k in saved]))
    assert drift < 0.1 * fresh_scale
    with pytest.raises(StageNotReady, match="--init-ppo"):
        from tradelab import stages

        stages.stage1(copy, "NQ", init_ppo=tmp_path / "missing.zip", config=stage1_config)
