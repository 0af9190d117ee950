"""RunRecorder writes every numeric metric to TensorBoard, including names it has never seen."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tradelab.grpo.local.runlog import TENSORBOARD, TRAIN_LOG, RunRecorder


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / TENSORBOARD))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_new_metric_reaches_the_event_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    recorder = RunRecorder(run_dir, tmp_path / "logs" / "run.log")
    try:
        recorder.step({"step": 3, "never_seen_metric_per_token": 0.25, "skipped": False, "note": "text",
                       "timings": {"brand_new_phase_s": 1.5}})
        recorder.validation(3, {"fresh_val_rate": 0.75})
    finally:
        recorder.close()
    scalars = _scalars(run_dir)
    assert scalars["train/never_seen_metric_per_token"] == [(3, 0.25)]
    assert scalars["timings/brand_new_phase_s"] == [(3, 1.5)]
    assert scalars["val/fresh_val_rate"] == [(3, 0.75)]
    # Flags and text stay in the JSON log only; the step is the x-axis, not a metric.
    assert not {"train/skipped", "train/note", "train/step"} & set(scalars)
    assert "never_seen_metric_per_token" in (run_dir / TRAIN_LOG).read_text(encoding="utf-8")
    assert (tmp_path / "logs" / "run.log").is_file()
