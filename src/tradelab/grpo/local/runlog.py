"""The run directory of a local GRPO run: manifest.json, run_log.jsonl, train_log.jsonl and TensorBoard events."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

from tradelab.fileio import append_jsonl, atomic_write_json
from tradelab.provenance import utc_now

MANIFEST = "manifest.json"
RUN_LOG = "run_log.jsonl"
TRAIN_LOG = "train_log.jsonl"
TENSORBOARD = "tensorboard"
STEP_KEY = "step"
"""The record field that is TensorBoard's x-axis, not a metric."""


def hardware_info() -> dict[str, Any]:
    """CPU/GPU description for the run manifest."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [
            {"name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())
        ]
    return info


def _is_scalar(value: Any) -> bool:
    """A real number TensorBoard can plot (bools are flags, not metrics)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunRecorder:
    """Writes the run directory's logs; library code never prints, so this is the run's record.

    Args:
        run_dir: The run directory (created).
        log_file: Human-readable log file the engine's logger also writes to during the run.
    """

    def __init__(self, run_dir: Path, log_file: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        self._handler = logging.FileHandler(log_file, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._logger = logging.getLogger("tradelab.grpo.local")
        self._logger.addHandler(self._handler)
        self._old_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD))

    def write_manifest(self, payload: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / MANIFEST, payload)

    def event(self, name: str, **fields: Any) -> None:
        """Append one event to ``run_log.jsonl`` and the log file."""
        append_jsonl(self.run_dir / RUN_LOG, [{"time": utc_now(), "event": name, **fields}])
        self._logger.info("%s %s", name, fields)

    def step(self, record: dict[str, Any]) -> None:
        """Append one step's metrics to ``train_log.jsonl`` and every numeric one to TensorBoard.

        Top-level numbers go under ``train/<name>``; a nested mapping (e.g. ``timings``) goes under ``<key>/<name>``,
        so a metric the trainer starts logging is recorded without being declared here first.
        """
        append_jsonl(self.run_dir / TRAIN_LOG, [{"time": utc_now(), **record}])
        step = record[STEP_KEY]
        groups = record.get("groups")
        if isinstance(groups, dict):
            self._logger.info(
                "step %s: %d of %d groups had zero reward variance (%.0f%%), mean group reward std %.4f; trained on "
                "%d groups after %d sampling round(s)%s", step, groups["zero_variance"], groups["sampled"],
                100.0 * groups["zero_variance_share"], groups["reward_std_mean"], groups["kept"], groups["rounds"],
                " (round cap reached)" if groups["capped"] else "")
        for key, value in record.items():
            if key == STEP_KEY:
                continue
            if isinstance(value, dict):
                for name, inner in value.items():
                    if _is_scalar(inner):
                        self._writer.add_scalar(f"{key}/{name}", inner, step)
            elif _is_scalar(value):
                self._writer.add_scalar(f"train/{key}", value, step)

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        self.event("validation", step=step, **metrics)
        for key, value in metrics.items():
            if _is_scalar(value):
                self._writer.add_scalar(f"val/{key}", value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        self._handler.close()
