"""``train_local`` end to end on the warm-started tiny advisor and a dataset exported from the generated NQ market."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tradelab.errors import DataError, StageFailed
from tradelab.grpo.local.train import train_local
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace

MARKET = "NQ"
STEP_KEYS = {"step", "reward_mean", "reward_std", "format_rate", "kl", "clip_frac", "grad_norm", "tokens_per_s",
             "timings", "loss", "losses", "blocked", "skipped", "groups"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_run_dir(run_dir: Path, summary: dict[str, Any], root: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metadata = json.loads((Workspace.at(root).soft_grpo_data_dir(MARKET) / "dataset_metadata.json").read_text())
    assert manifest["dataset"]["sha256s"] == {s: metadata["files"][s]["sha256"] for s in ("train", "val")}
    assert manifest["config"]["grpo_local"]["optim"]["steps"] == 4  # the --test override, recorded resolved
    assert {"git_sha", "versions", "config_hash"} <= set(manifest["origin"]) and "cpu_count" in manifest["hardware"]
    events = [e["event"] for e in _lines(run_dir / "run_log.jsonl")]
    assert events[0] == "start" and events[-1] == "finished" and "checkpoint" in events
    steps = _lines(run_dir / "train_log.jsonl")
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and all(STEP_KEYS <= set(s) for s in steps)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = run_dir / "checkpoints" / "step_000002"
    assert (ckpt / "adapter" / "adapter_config.json").is_file() and (ckpt / "trainer_state.pt").is_file()
    assert Path(summary["adapter_path"]) == Workspace.at(root).soft_grpo_adapter_dir(MARKET)
    assert (Path(summary["adapter_path"]) / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_soft_test_run_records_everything_and_resume_repeats_it(grpo_root: Path, local_config: Any) -> None:
    from tradelab.config import load_config
    from tradelab.grpo.dataset import export_dataset

    # Without dynamic sampling: nearly every answer is blocked, so every group would be dropped and no step would
    # update, and the resume check below compares updates.
    overrides = {"soft_grpo.dataset.blocklist": [" "], "grpo_local.dynamic_sampling.enabled": False}
    export_dataset(grpo_root, MARKET, load_config(overrides=overrides))  # the blocklist travels in the ground truth
    config = load_config(profile="smoke", overrides=overrides)
    first = train_local(grpo_root, MARKET, config, mode="soft")
    run_dir = Path(first["run_dir"])
    _check_run_dir(run_dir, first, grpo_root)
    original = _lines(run_dir / "train_log.jsonl")
    assert sum(s["soft_step_frac"] for s in original) > 0  # soft thinking steps really happened
    assert sum(s["blocked"] for s in original) > 0  # answers containing a space got the malformed penalty
    # The published adapter, loaded as Stage 1 loads it, scores held-out prompts as the trained model did.
    trip = first["adapter_round_trip"]
    assert trip["ok"] and trip["prompts"] >= 1 and trip["max_abs_diff"] <= 1e-3

    runs = load_manifest(grpo_root, MARKET)["stage2"]["runs"]
    record = runs[-1]
    assert record["engine"] == "local" and record["status"] == "completed" and record["return_code"] == 0
    assert record["command"][-2:] == ["--mode", "soft"] and record["output_dir"] == str(run_dir)
    assert record["command"][4:6] == ["--profile", "smoke"] and record["profile"] == "smoke"
    assert record == first["run"].record() and record["config_hash"]
    assert record["output"]["kind"] == "adapter" and record["output"]["base_model_path"]
    assert record["val_reward_start"] == first["val_reward_start"]
    # How many groups carried a signal: per step in train_log.jsonl, summed over the run in the manifest record.
    signal = record["group_signal"]
    assert signal["steps"] == 4 and signal["groups_sampled"] == sum(s["groups"]["sampled"] for s in original)
    assert signal["zero_variance_share"] == pytest.approx(
        sum(s["groups"]["zero_variance"] for s in original) / signal["groups_sampled"])
    assert all(s["groups"]["kept"] == 2 and s["groups"]["rounds"] == 1 for s in original)
    assert "zero reward variance" in Path(record["log_file"]).read_text()

    resumed = train_local(grpo_root, MARKET, config, mode="soft", resume_from=run_dir)
    assert resumed["start_step"] == 2 and Path(resumed["run_dir"]) != run_dir
    again = _lines(Path(resumed["run_dir"]) / "train_log.jsonl")
    keys = ("losses", "reward_mean", "grad_norm", "kl", "clip_frac", "answer_tokens")
    assert [s["step"] for s in again] == [3, 4]
    assert [{k: s[k] for k in keys} for s in again] == [{k: s[k] for k in keys} for s in original[2:]]
    assert resumed["val_reward_end"] == first["val_reward_end"]


@pytest.mark.slow
def test_nan_losses_are_skipped_then_abort(grpo_root: Path, local_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_reward() -> Any:
        return lambda data_source, text, ground_truth, extra_info=None: {"score": float("nan"), "format": 0.0}

    monkeypatch.setattr("tradelab.grpo.local.train.default_reward", nan_reward)
    config = local_config("smoke", **{"guards.nan_max_skips": 1})
    with pytest.raises(StageFailed, match="nan_max_skips"):
        train_local(grpo_root, MARKET, config, mode="discrete")
    record = load_manifest(grpo_root, MARKET)["stage2"]["runs"][-1]
    assert record["status"] == "failed" and record["return_code"] == 1
    run_dir = Path(record["output_dir"])
    skips = [e for e in _lines(run_dir / "run_log.jsonl") if e["event"] == "nan_skip"]
    assert [e["skipped_steps"] for e in skips] == [1, 2]
    assert all(s["skipped"] for s in _lines(run_dir / "train_log.jsonl"))
    assert not Workspace.at(grpo_root).soft_grpo_adapter_dir(MARKET).exists()


def test_changed_dataset_stops_the_run_before_training(grpo_root: Path, local_config: Any) -> None:
    train = Workspace.at(grpo_root).soft_grpo_data_dir(MARKET) / "stage2_train.parquet"
    train.write_bytes(train.read_bytes() + b"\0")
    with pytest.raises(DataError, match="differs from files.train.sha256"):
        train_local(grpo_root, MARKET, local_config("smoke"), mode="discrete")
    assert not (Workspace.at(grpo_root).soft_grpo_output_dir(MARKET)).exists()


# Discrete GRPO is validated the way the advisor decodes. SofT-GRPO is validated with its own soft-thinking
# decoding: on the 1M-parameter tiny advisor, gains learnt on mixture inputs do not carry over to plain decoding
# within a few steps (see the report in the run's validation figures).
IMPROVEMENT_RUNS = {
    "discrete": {"optim.steps": 6, "optim.lr": 3e-3, "run.val_decoding": "discrete"},
    "soft": {"optim.steps": 10, "optim.lr": 2e-3, "run.val_decoding": "rollout", "soft.think_start_marker": "",
             "soft.max_think_tokens": 4},
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["discrete", "soft"])
def test_fixed_seed_cpu_run_raises_validation_reward(grpo_root: Path, local_config: Any, mode: str) -> None:
    config = local_config(**{
        "seed": 0, "cpu_threads": 1, "optim.prompts_per_step": 4, "rollout.group_size": 4,
        "rollout.max_new_tokens": 32, "optim.warmup_steps": 0, "optim.grad_accum": 1, "run.val_every": 0,
        "run.val_prompts": 8, "run.val_samples": 4, "run.val_greedy": False, "run.checkpoint_every": 0,
        **IMPROVEMENT_RUNS[mode],
    })
    summary = train_local(grpo_root, MARKET, config, mode=mode)
    steps = IMPROVEMENT_RUNS[mode]["optim.steps"]
    assert [v["step"] for v in summary["validation"]] == [0, steps]
    assert summary["validation"][0]["val_answers"] == 32
    assert summary["val_reward_end"] > summary["val_reward_start"] + 0.1


def _adapter_tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("scripted,kept,ranked_by", [([0.3, 0.1, 0.5, 0.5, 0.2], 2, "mean"),
                                                      ([0.4, 0.1, 0.2, 0.3, 0.4], 0, "sides_balanced")])
def test_best_validation_hands_on_the_best_validated_adapter(grpo_root: Path, local_config: Any,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             scripted: list[float], kept: int, ranked_by: str) -> None:
    """The published adapter is the validated step's with the highest figure ``hand_on_reward`` names (the earliest
    on a tie; step 0 = the adapter the run started from), its record says which, and it still passes the round
    trip. The other figure is scripted the opposite way, so ranking by the wrong one would publish another step."""
    import torch

    import tradelab.grpo.local.train as train
    from tradelab.grpo.baselines import hindsight_side
    from tradelab.grpo.local.handon import RANKED_FIGURE
    from tradelab.grpo.local.model import resolve_sources

    real = train.validate
    rewards = iter(scripted)
    ranked, other = RANKED_FIGURE[ranked_by], RANKED_FIGURE["sides_balanced" if ranked_by == "mean" else "mean"]
    seen: list[dict[str, Any]] = []

    def scripted_validate(ctx: Any, rows: Any, sides: Any) -> dict[str, Any]:  # the real validation, scripted figures
        metrics = real(ctx, rows, sides)
        seen.append({"sides": list(sides), "rows": list(rows), **metrics})
        value = next(rewards)
        return {**metrics, ranked: value, other: -value}

    monkeypatch.setattr(train, "validate", scripted_validate)
    config = local_config("smoke", **{"run.hand_on": "best_validation", "run.val_every": 1,
                                      "run.hand_on_reward": ranked_by, "run.checkpoint_every": 1, "optim.lr": 3e-2})
    _, stage1_adapter = resolve_sources(grpo_root, MARKET, config)
    summary = train_local(grpo_root, MARKET, config, mode="discrete")
    run_dir = Path(summary["run_dir"])
    assert [v["step"] for v in summary["validation"]] == [0, 1, 2, 3, 4]
    figures = {"mean": summary["val_reward_published"], "sides_balanced": summary["val_balanced_published"]}
    assert (summary["published_step"], figures[ranked_by]) == (kept, max(scripted))
    # The record keeps both figures of the handed-on step: the plain one always under val_reward_*.
    other_name = "sides_balanced" if ranked_by == "mean" else "mean"
    assert figures[other_name] == -max(scripted)
    assert summary["val_reward_end"] == (scripted[-1] if ranked_by == "mean" else -scripted[-1])
    expected = stage1_adapter if kept == 0 else run_dir / "checkpoints" / f"step_{kept:06d}" / "adapter"
    published, want = _adapter_tensors(Path(summary["adapter_path"])), _adapter_tensors(expected)
    assert published.keys() == want.keys() and all(torch.equal(published[k], want[k]) for k in want)
    last = _adapter_tensors(run_dir / "checkpoints" / "step_000003" / "adapter")
    assert any(not torch.equal(published[k], last[k]) for k in want)  # the run moved: the choice mattered
    assert summary["adapter_round_trip"]["ok"]
    record = load_manifest(grpo_root, MARKET)["stage2"]["runs"][-1]
    assert (record["published_step"], record["hand_on_reward"]) == (kept, ranked_by)
    assert (record["val_reward_published"], record["val_balanced_published"]) == (
        summary["val_reward_published"], summary["val_balanced_published"])
    assert (record["val_balanced_start"], record["val_balanced_end"]) == (
        summary["validation"][0]["val_reward_balanced"], summary["validation"][-1]["val_reward_balanced"])
    events = [e for e in _lines(run_dir / "run_log.jsonl") if e["event"] == "hand_on"]
    assert [e["step"] for e in events] == [kept]
    # Every validation was handed each row's hindsight side, and the real one computed both figures.
    for m in seen:
        assert m["sides"] == [hindsight_side(r.data_source, r.ground_truth) for r in m["rows"]]
        assert {"val_reward_mean", "val_reward_balanced"} <= m.keys()
        if not {"BUY", "SELL"} <= set(m["sides"]):  # nothing to balance: the same answers' plain mean
            assert m["val_reward_balanced"] == pytest.approx(m["val_reward_mean"])


@pytest.mark.slow
def test_last_hands_on_the_final_step(grpo_root: Path, local_config: Any) -> None:
    summary = train_local(grpo_root, MARKET, local_config("smoke"), mode="discrete")
    assert summary["published_step"] == 4 and summary["val_reward_published"] == summary["val_reward_end"]
    assert not (Path(summary["run_dir"]) / "best_adapter").exists()
