"""The loop's bookkeeping: stage order, lineage, resume at the stage that stopped, settings guard, report shape.

The four stages are replaced by recorders here (each real stage has its own tests, and the slow tests in
``tests/e2e/test_loop_learning.py`` run the real ones end to end); what is under test is what ``run_loop`` does
with them: the order, the manifest's ``loop`` section, resuming, and the report it writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tradelab import stages
from tradelab.config import TradelabConfig
from tradelab.errors import StageNotReady
from tradelab.loop import run as loop_run
from tradelab.loop.run import LOOP_STAGES, run_loop
from tradelab.manifest import load_manifest
from tradelab.manifest_schema import LoopEvaluation, LoopIteration, LoopSection, LoopSettings

FIGURES = {"hit_rate": 0.5, "hit_rate_ci": [0.4, 0.6], "hit_rate_up": 0.5, "hit_rate_up_ci": None,
           "hit_rate_down": 0.5, "hit_rate_down_ci": None, "balanced_hit_rate": 0.5,
           "balanced_hit_rate_ci": [0.45, 0.55], "holdout_reward": 0.1, "holdout_reward_ci": [0.0, 0.2],
           "parse_rate": 1.0, "parse_rate_ci": [0.9, 1.0], "non_hold_share": 0.5, "non_hold_share_ci": [0.4, 0.6],
           "prompts": 10, "directional": 5, "adapter_sha256": "x", "answers_path": "a.jsonl"}
AGENT = {"net_pnl_usd": 12.5, "net_pnl_usd_ci": [-3.0, 20.0], "net_pnl_usd_seed_ci": None, "trades_per_day": 1.5,
         "sharpe": 0.3, "days": 4, "trades": 6, "seeds": 2, "per_seed_net_pnl_usd": [12.5, 12.5]}


class Recorder:
    """Stands in for the four stages: records each call, fills the fields the real stage would, fails on demand."""

    def __init__(self, fail_at: tuple[int, str] | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.fail_at = fail_at

    def stage(self, name: str) -> Any:
        def run(root, market, config, settings, state: LoopSection, iteration: LoopIteration, probe,
                progress) -> None:
            number = iteration.iteration
            self.calls.append((number, name))
            if self.fail_at == (number, name):
                self.fail_at = None
                raise KeyboardInterrupt("stopped")
            if name == "stage1":
                previous = loop_run._previous(state, iteration)
                iteration.adapter_in_sha256 = previous.adapter_out_sha256 if previous else "warm"
                iteration.base_in_sha256 = "base"
                iteration.ppo_init = "final.zip" if previous else None
                iteration.adapter_stage1_sha256 = f"s1-{number}"
                iteration.advisor_stage1 = dict(FIGURES)
            elif name == "stage2_dataset":
                iteration.dataset_sha256s = {"train": f"t{number}", "val": f"v{number}"}
            elif name == "stage2_engine":
                iteration.adapter_out_path = f"adapter-{number}"
                iteration.adapter_out_sha256 = f"s2-{number}"
                iteration.advisor = {**FIGURES, "hit_rate": 0.5 + 0.05 * number,
                                     "balanced_hit_rate": 0.5 + 0.02 * number}
                iteration.stage2_vs_stage1 = {"reward_gain": 0.0, "reward_gain_ci": None, "answers_changed": 0.0,
                                              "logprob_shift_mean": 1e-4, "same_adapter": False}
            else:
                iteration.evaluation = LoopEvaluation(
                    report_dir="r", agents={"hybrid": AGENT, "ppo": AGENT},
                    hybrid_minus_ppo={"net_pnl_usd": 0.0, "net_pnl_usd_ci": [0.0, 0.0]}, identical=[["hybrid", "ppo"]])
        return run


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(loop_run, "_STAGES", {name: rec.stage(name) for name in LOOP_STAGES})
    monkeypatch.setattr(loop_run.ProbeContext, "warm_adapter", lambda self: Path("warm"))
    monkeypatch.setattr(loop_run.ProbeContext, "measure", lambda self, model, label: dict(FIGURES))
    # The stand-in stages record no Stage 1 or Stage 2 run of their own to check a redo against.
    monkeypatch.setattr(loop_run.resume, "check_inputs", lambda *args: None)
    return rec


def _root(tmp_path: Path, config: TradelabConfig) -> Path:
    stages.generate_data(tmp_path, "NQ", days=5, seed=1, edge=0.2, config=config)
    return tmp_path


SETTINGS = LoopSettings(iterations=2, engine="local", seeds=2, profile="smoke", probe_prompts=10)


def test_stages_run_in_order_and_lineage_chains(tmp_path: Path, config: TradelabConfig, recorder: Recorder) -> None:
    root = _root(tmp_path, config)
    result = run_loop(root, "NQ", config, SETTINGS)
    assert recorder.calls == [(i, s) for i in (1, 2) for s in LOOP_STAGES]
    report = json.loads(Path(result["paths"]["json"]).read_text())
    assert report["market"] == "NQ" and report["edge"] == 0.2 and report["seeds"] == 2
    second = report["iterations"][1]
    assert second["adapter_in_sha256"] == report["iterations"][0]["adapter_out_sha256"] == "s2-1"
    assert second["ppo_init"] == "final.zip" and second["dataset_sha256s"] == {"train": "t2", "val": "v2"}
    for key in ("hit_rate", "hit_rate_ci", "balanced_hit_rate", "balanced_hit_rate_ci", "holdout_reward",
                "holdout_reward_ci", "parse_rate", "non_hold_share"):
        assert key in second["advisor"]
    for key in ("net_pnl_usd", "net_pnl_usd_ci", "trades_per_day", "sharpe"):
        assert key in second["agents"]["hybrid"]
    assert any("identical net P&L to the cent" in note for note in second["notes"])
    assert report["headline"]["advisor_hit_rate_gain"] == pytest.approx(0.1)
    assert report["headline"]["advisor_balanced_hit_rate_gain"] == pytest.approx(0.04)
    manifest = load_manifest(root, "NQ")
    assert manifest["loop"]["status"] == "completed"
    # The manifest records paths relative to the root (a moved workspace keeps its report); the caller gets them whole.
    assert root / manifest["loop"]["report"]["json"] == Path(result["paths"]["json"])
    for suffix in ("md", "png"):
        assert Path(result["paths"][suffix]).stat().st_size > 0


def test_an_interrupted_loop_resumes_at_the_stage_that_stopped(tmp_path: Path, config: TradelabConfig,
                                                               recorder: Recorder) -> None:
    root = _root(tmp_path, config)
    recorder.fail_at = (2, "stage2_dataset")
    with pytest.raises(KeyboardInterrupt):
        run_loop(root, "NQ", config, SETTINGS)
    state = load_manifest(root, "NQ")["loop"]
    assert state["status"] == "interrupted" and "iteration 2 stage2_dataset" in state["error"]
    assert state["iterations"][1]["stages"] == {
        "stage1": "completed", "stage2_dataset": "interrupted"}
    recorder.calls.clear()
    result = run_loop(root, "NQ", config, SETTINGS)
    assert recorder.calls == [(2, "stage2_dataset"), (2, "stage2_engine"), (2, "evaluation")]
    state = load_manifest(root, "NQ")["loop"]
    assert state["status"] == "completed"
    (stop,) = state["interruptions"]
    assert (stop["iteration"], stop["stage"], stop["status"], stop["redo"]) == (2, "stage2_dataset", "interrupted",
                                                                                "afresh")
    report = json.loads(Path(result["paths"]["json"]).read_text())
    assert [it["iteration"] for it in report["iterations"]] == [1, 2]
    assert [r["stage"] for r in report["iterations"][1]["redone"]] == ["stage2_dataset"]
    assert report["iterations"][0]["redone"] == []
    assert "Redone after an interruption: stage2_dataset" in Path(result["paths"]["md"]).read_text()


def test_an_unfinished_loop_with_other_settings_needs_restart(tmp_path: Path, config: TradelabConfig,
                                                              recorder: Recorder) -> None:
    root = _root(tmp_path, config)
    recorder.fail_at = (1, "evaluation")
    with pytest.raises(KeyboardInterrupt):
        run_loop(root, "NQ", config, SETTINGS)
    other = LoopSettings(iterations=2, engine="local", seeds=3, profile="smoke", probe_prompts=10)
    with pytest.raises(StageNotReady, match="--restart"):
        run_loop(root, "NQ", config, other)
    recorder.calls.clear()
    run_loop(root, "NQ", config, other, restart=True)
    assert recorder.calls[0] == (1, "stage1")


def test_a_full_disk_while_the_report_is_written_keeps_the_last_one_and_the_next_run_finishes(
        tmp_path: Path, config: TradelabConfig, recorder: Recorder) -> None:
    from disk_faults import disk_fault

    from tradelab.errors import WorkspaceError

    root = _root(tmp_path, config)
    with disk_fault(root, match=".loop_report.*.md", after=1) as fault:  # the second report: the final one
        with pytest.raises(WorkspaceError, match="No space left on device"):
            run_loop(root, "NQ", config, SETTINGS)
    assert fault.fired
    state = load_manifest(root, "NQ")["loop"]
    assert state["status"] == "failed" and state["activity"] == "report" and "No space" in state["error"]
    folder = root / state["report_dir"]
    first = json.loads((folder / "loop_report.json").read_text())
    # The report written after iteration 1 is still there, whole: all three files.
    assert [it["iteration"] for it in first["iterations"]] == [1] and first["status"] == "running"
    assert "## Iteration 1" in (folder / "loop_report.md").read_text()
    assert "Iteration 2" not in (folder / "loop_report.md").read_text()
    assert not list(folder.glob(".loop_report*"))
    recorder.calls.clear()
    result = run_loop(root, "NQ", config, SETTINGS)
    assert recorder.calls == []
    report = json.loads(Path(result["paths"]["json"]).read_text())
    assert report["status"] == "completed" and report["completed_at"] is not None
    assert [(s["stage"], s["status"], s["redo"]) for s in report["interruptions"]] == [("report", "failed",
                                                                                       "rewritten")]
    assert "Iteration 2" in Path(result["paths"]["md"]).read_text()


def test_an_adapter_handed_back_unchanged_is_the_same_adapter_whatever_files_lie_beside_its_weights(
        tmp_path: Path) -> None:
    from tradelab.loop.advisor_probe import _weights_sha256

    stage1, stage2, trained = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "trained"
    for folder, weights, readme in ((stage1, b"w1", "stage 1"), (stage2, b"w1", "engine"), (trained, b"w2", "x")):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(weights)
        (folder / "README.md").write_text(readme)
    assert _weights_sha256(stage1) == _weights_sha256(stage2) != _weights_sha256(trained)
