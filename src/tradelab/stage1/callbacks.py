"""Training-loop hooks for Stage 1: policy probe, TensorBoard stats, periodic checkpoints and adapter refinement."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from tradelab.core.tradesim import is_entry_decision
from tradelab.fileio import atomic_path, sha256_file
from tradelab.integrity import record_sha256
from tradelab.stage1.advice import AdviceVecEnv
from tradelab.stage1.experience import ExperienceRecorder
from tradelab.stage1.refine import refine_adapter
from tradelab.stage1.wiring import make_probe
from tradelab.stage1.vecnorm import SlotPreservingVecNormalize, save_stats

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^stage1_(\d+)_steps\.zip$")


def save_model(model: Any, vecnorm: SlotPreservingVecNormalize, model_path: Path, vecnorm_path: Path) -> str:
    """Save the PPO model and the normalisation statistics as one pair.

    Both are written to temporary files and the model zip's sha256 is recorded beside it (:mod:`tradelab.integrity`,
    since loading it decodes pickles) before either replaces its predecessor: a write that fails (a full disk)
    leaves the old pair and its recorded hash as they were. The statistics are ``.npz``. Returns the model's sha256.
    """
    with atomic_path(model_path) as tmp_model, atomic_path(vecnorm_path) as tmp_stats:
        model.save(str(tmp_model))
        save_stats(vecnorm, tmp_stats)
        digest = record_sha256(model_path, digest=sha256_file(tmp_model))
    return digest


@dataclass
class Checkpointer:
    """Periodic checkpoints ``stage1_<steps>_steps.zip`` + ``..._vecnormalize.npz`` under ``directory``."""

    directory: Path
    every_steps: int
    last_steps: int = 0

    def paths(self, steps: int) -> tuple[Path, Path]:
        stem = f"stage1_{steps:09d}_steps"
        return self.directory / f"{stem}.zip", self.directory / f"{stem}_vecnormalize.npz"

    def due(self, steps: int) -> bool:
        return steps - self.last_steps >= self.every_steps

    def save(self, model: Any, vecnorm: SlotPreservingVecNormalize, steps: int) -> Path:
        model_path, vecnorm_path = self.paths(steps)
        save_model(model, vecnorm, model_path, vecnorm_path)
        self.last_steps = steps
        log.info("stage1 checkpoint at %d steps: %s", steps, model_path)
        return model_path

    @staticmethod
    def latest(directory: Path) -> tuple[Path, Path, int] | None:
        """The newest complete checkpoint (model and statistics both present), or None.

        Statistics are the ``.npz``, or the pickled ``.pkl`` of an older tradelab (loaded only if its hash was
        recorded).
        """
        found = []
        for path in directory.glob("stage1_*_steps.zip") if directory.is_dir() else ():
            match = _CHECKPOINT.match(path.name)
            stats = next((s for s in (path.with_name(f"{path.stem}_vecnormalize{ext}") for ext in (".npz", ".pkl"))
                          if s.is_file()), None)
            if match and stats is not None:
                found.append((int(match.group(1)), path, stats))
        if not found:
            return None
        steps, path, stats = max(found)
        return path, stats, steps


@dataclass
class Refiner:
    """Every ``every_steps`` env steps, refine the adapter on recent resolved experience and load it.

    Attributes:
        advisor: The :class:`tradelab.advisor.generate.Advisor` whose adapter is swapped.
        recorder: Source of resolved records.
        config: The whole config.
        base_dir: Base model directory.
        adapter_path: The adapter currently in use (the next refinement starts from it).
        out_dir: Where refined adapters go (``stage1_lora_refining``; published to ``stage1_lora`` when the run
            completes).
        every_steps, recent_records, min_records, epochs: From ``stage1.refinement`` (test overrides applied).
        seed: Base training seed (plus the refinement count).
        hindsight: Labelled flat bars of the training split (:class:`tradelab.stage1.hindsight.HindsightBars`)
            added to every refinement, or None.
        hindsight_bars: How many of them each refinement draws.
    """

    advisor: Any
    recorder: ExperienceRecorder
    config: Any
    base_dir: Path
    adapter_path: Path
    out_dir: Path
    every_steps: int
    recent_records: int
    min_records: int
    epochs: int
    seed: int
    hindsight: Any = None
    hindsight_bars: int = 0
    last_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def due(self, steps: int) -> bool:
        return steps - self.last_steps >= self.every_steps

    def run(self, steps: int) -> dict[str, Any] | None:
        """Refine now if enough resolved records exist; returns the refinement summary or None when skipped."""
        self.last_steps = steps
        records = list(self.recorder.recent)[-self.recent_records:]
        if len(records) < self.min_records:
            log.info("refinement skipped at %d steps: %d resolved records < %d", steps, len(records), self.min_records)
            return None
        labelled = self.hindsight.draw(self.hindsight_bars, len(self.history)) if self.hindsight is not None else []
        self.advisor.release_weights()  # the training loads its own base; the advisor reloads after it
        try:
            summary = refine_adapter(records + labelled, self.config, base_dir=self.base_dir,
                                     init_adapter=self.adapter_path, out_dir=self.out_dir,
                                     seed=self.seed + len(self.history), epochs=self.epochs)
        finally:
            if self.advisor.model is None:
                self.advisor.set_adapter(self.adapter_path)
        if summary["examples"]:
            self.advisor.set_adapter(self.out_dir)
            self.adapter_path = self.out_dir
        summary = {**summary, "at_steps": steps, "records": len(records), "hindsight_bars": len(labelled),
                   "entry_records": sum(is_entry_decision(r) for r in records)}
        self.history.append(summary)
        return summary


class Stage1Callback(BaseCallback):
    """Wires the trained policy into the advice wrapper and runs the periodic Stage 1 duties.

    Args:
        advice_env: The advice wrapper (gets the policy probe; its stats are logged).
        vecnorm: The normalising wrapper (saved with checkpoints, used by the probe).
        recorder: The experience recorder (its counts are logged), or None.
        checkpointer: Periodic checkpoints.
        refiner: Periodic adapter refinement, or None.
        progress: Called with ``(timesteps_done, total_timesteps)`` after every vector step.
        total_timesteps: The run's target, for ``progress``.
    """

    def __init__(
        self,
        *,
        advice_env: AdviceVecEnv,
        vecnorm: SlotPreservingVecNormalize,
        recorder: ExperienceRecorder | None,
        checkpointer: Checkpointer,
        refiner: Refiner | None,
        progress: Callable[[int, int], None] | None,
        total_timesteps: int,
    ) -> None:
        super().__init__()
        self.advice_env = advice_env
        self.vecnorm = vecnorm
        self.recorder = recorder
        self.checkpointer = checkpointer
        self.refiner = refiner
        self.progress = progress
        self.total_timesteps = total_timesteps

    def _on_training_start(self) -> None:
        self.advice_env.probe = make_probe(self.model.policy, self.vecnorm)
        self.checkpointer.last_steps = max(self.checkpointer.last_steps, self.num_timesteps)
        if self.refiner is not None:
            self.refiner.last_steps = max(self.refiner.last_steps, self.num_timesteps)

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        if self.checkpointer.due(steps):
            self.checkpointer.save(self.model, self.vecnorm, steps)
        if self.refiner is not None and self.refiner.due(steps):
            summary = self.refiner.run(steps)
            if summary is not None:
                self.logger.record("advisor/refinement_examples", summary["examples"])
                self.logger.record("advisor/refinement_mean_weight", summary["mean_weight"])
        if self.progress is not None:
            self.progress(min(steps, self.total_timesteps), self.total_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        for key, value in self.advice_env.stats.window().items():
            self.logger.record(key, value)
        if self.recorder is not None:
            self.logger.record("experience/written", self.recorder.written)
            self.logger.record("experience/pending", self.recorder.pending_count)
