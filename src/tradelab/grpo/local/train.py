"""``train_local``: the single-process Stage 2 engine (GRPO or SofT-GRPO on transformers + PEFT).

It refines the Stage 1 LoRA adapter on ``data/soft_grpo/<MKT>/stage2_*.parquet`` with the shared reward, writes a
run directory ``models/phase3_hybrid/<MKT>/soft_grpo/local_<UTC>/`` (manifest.json, run_log.jsonl,
train_log.jsonl, tensorboard/, checkpoints/, adapter/), publishes the final adapter to ``soft_grpo/adapter/`` and
appends the run to the market manifest's ``stage2.runs``.

Read top to bottom: the run's effective settings, then the run itself. Its checkpoints are
:mod:`tradelab.grpo.local.checkpoints`; one GRPO step (rollout, reward, loss, update) is
:func:`tradelab.grpo.local.step.run_step`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tradelab.config import TradelabConfig, config_hash
from tradelab.config.grpo_local_schema import GrpoLocalConfig
from tradelab.errors import ConfigError, StageFailed, TradelabError
from tradelab.fileio import atomic_copy_dir, new_stamped_dir
from tradelab.grpo.baselines import hindsight_side
from tradelab.grpo.local.checkpoints import load_trainer_state, resolve_checkpoint, restore_rng, save_checkpoint
from tradelab.grpo.local.data import DatasetCheck, PromptGuard, prepare_rows, verify_dataset
from tradelab.grpo.local.groups import RunGroupSignal
from tradelab.grpo.local.handon import HandOn
from tradelab.grpo.local.model import load_policy, resolve_sources, stop_spec, trainable_parameters
from tradelab.grpo.local.rollout import default_reward
from tradelab.grpo.local.runlog import TENSORBOARD, RunRecorder, hardware_info
from tradelab.grpo.local.step import StepContext, run_step, validate
from tradelab.grpo.roundtrip import PROBE_COMPLETION, adapter_round_trip, completion_logprobs
from tradelab.manifest import append_run
from tradelab.manifest_schema import GroupSignal, RunDataset, RunOutput, RunRecord
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.provenance import origin, utc_now

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- settings
MODES = ("soft", "discrete")


def effective_settings(config: TradelabConfig, mode: str | None) -> GrpoLocalConfig:
    """``config.grpo_local`` of a resolved config (test profile already applied) with ``mode`` when given.

    Raises:
        ConfigError: ``mode`` is not ``soft`` or ``discrete``.
    """
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    base = config.grpo_local
    return base.model_copy(update={"mode": mode or base.mode})


def resolved_config(config: TradelabConfig, settings: GrpoLocalConfig) -> TradelabConfig:
    """The whole config with the effective engine section, as recorded and hashed for the run."""
    return config.model_copy(update={"grpo_local": settings})


def cli_command(root: Path, market: str, mode: str, profile: str, resume_from: str | Path | None) -> list[str]:
    """The ``main.py`` argv that starts the same run (under the same run profile)."""
    argv = ["python", "main.py", "--root", str(root), "--profile", profile, "stage2", "--market", market,
            "--engine", "local", "--mode", mode]
    if resume_from is not None:
        argv += ["--resume-from", str(resume_from)]
    return argv


# ------------------------------------------------------------------------------------------------ the run
ROUND_TRIP_PROMPTS = 3
"""Held-out (validation) prompts on which the published adapter must score as the trained model did."""


def seed_everything(seed: int, deterministic: bool, cpu_threads: int) -> tuple[bool, int]:
    """Seed Python, NumPy and torch; set the deterministic switch and the CPU thread count.

    Returns:
        The previous ``(deterministic, threads)`` process settings, for :func:`restore_process`.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    return previous


def restore_process(previous: tuple[bool, int]) -> None:
    """Undo :func:`seed_everything`'s deterministic switch and thread count."""
    torch.use_deterministic_algorithms(previous[0])
    torch.set_num_threads(previous[1])


def build_optimizer(params: list[Any], settings: Any) -> tuple[Any, Any]:
    """AdamW over ``params`` and a linear warm-up LR schedule (``settings`` = effective ``grpo_local``)."""
    optim = settings.optim
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    warmup = optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: min(1.0, (u + 1) / (warmup + 1)))
    return optimizer, scheduler


def publish_adapter(model: Any, run_dir: Path, target: Path) -> Path:
    """Save the adapter into the run directory and replace ``target`` with a copy of it (via a temp folder)."""
    final = run_dir / "adapter"
    model.save_pretrained(final)
    return atomic_copy_dir(final, target)


class _Run:
    """State of one run between setup and the final record."""

    def __init__(self, root: Path, market: str, config: TradelabConfig, mode: str | None,
                 resume_from: str | Path | None) -> None:
        self.ws = Workspace.at(root)
        self.market = validate_market_name(market)
        self.settings = effective_settings(config, mode)
        self.config = resolved_config(config, self.settings)
        self.config_hash = config_hash(self.config)
        self.resume_from = resume_from
        self.started_at = utc_now()
        self.clock = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.skipped = 0
        self.start_step = 0
        self.steps_done = 0
        self.round_trip: dict[str, Any] | None = None
        self.group_signal = RunGroupSignal()

    def setup(self) -> None:
        s = self.settings
        self.check: DatasetCheck = verify_dataset(self.ws.root, self.market,
                                                  allow_mismatch=s.guards.allow_dataset_hash_mismatch)
        self.checkpoint = resolve_checkpoint(self.resume_from) if self.resume_from is not None else None
        self.base, self.init_adapter = resolve_sources(self.ws.root, self.market, self.config)
        if self.checkpoint is not None:
            self.init_adapter = self.checkpoint / "adapter"
        self.previous = seed_everything(s.seed, s.deterministic, s.cpu_threads)
        loaded = time.perf_counter()
        self.policy = load_policy(self.base, self.init_adapter, self.config, device=s.device)
        self.timings["load_s"] = time.perf_counter() - loaded
        tok = self.policy.tokenizer
        self.guard = PromptGuard(s.rollout.max_prompt_tokens, s.rollout.prompt_overflow)
        self.train_rows = prepare_rows(self.check.paths["train"], tok, self.guard)
        self.val_rows = prepare_rows(self.check.paths["val"], tok, self.guard, limit=s.run.val_prompts)
        self.val_sides = [hindsight_side(row.data_source, row.ground_truth) for row in self.val_rows]
        self.train_sides = ([hindsight_side(row.data_source, row.ground_truth) for row in self.train_rows]
                            if s.optim.prompt_draw == "sides_balanced" else None)
        params = trainable_parameters(self.policy.model)
        optimizer, scheduler = build_optimizer(params, s)
        stop = stop_spec(tok, self.policy.model, s.soft, s.rollout.max_new_tokens)
        self.ctx = StepContext(self.policy.model, tok, s, s.mode, stop, optimizer, scheduler, params,
                               default_reward())
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        self.run_dir = new_stamped_dir(self.ws.soft_grpo_output_dir(self.market), prefix="local_")
        self.hand_on = HandOn(s.run.hand_on, s.run.hand_on_reward, self.run_dir)
        stamp = self.run_dir.name.removeprefix("local_")
        self.recorder = RunRecorder(self.run_dir, self.ws.soft_grpo_log_dir() / f"{self.market}_{stamp}.log")
        self.recorder.write_manifest(self._manifest())

    def _restore(self, checkpoint: Path) -> None:
        payload = load_trainer_state(checkpoint)
        self.ctx.optimizer.load_state_dict(payload["optimizer"])
        self.ctx.scheduler.load_state_dict(payload["scheduler"])
        restore_rng(payload["rng"])
        state = payload["state"]
        self.start_step = self.steps_done = int(state["step"])
        self.skipped = int(state["skipped_steps"])
        if state.get("config_hash") != self.config_hash:
            log.warning("%s: resumed under a different config (hash %s, checkpoint %s)", checkpoint,
                        self.config_hash, state.get("config_hash"))

    def _manifest(self) -> dict[str, Any]:
        return {
            "engine": "local", "mode": self.settings.mode, "market": self.market, "profile": self.config.profile,
            "started_at": self.started_at, "resumed_from": str(self.checkpoint) if self.checkpoint else None,
            "start_step": self.start_step, "config": self.config.model_dump(mode="json"),
            "config_hash": self.config_hash,
            "dataset": {"paths": self.check.paths, "sha256s": self.check.sha256s, "expected": self.check.expected,
                        "mismatches": self.check.mismatches, "train_rows": len(self.train_rows),
                        "val_rows": len(self.val_rows), "prompts_truncated": self.guard.truncated,
                        "prompts_rejected": self.guard.rejected},
            "base_model": str(self.base), "init_adapter": str(self.init_adapter),
            "origin": origin(self.config_hash, self.settings.seed, profile=self.config.profile),
            "hardware": hardware_info(),
            "device": self.policy.device,
        }

    def validate(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        metrics = validate(self.ctx, self.val_rows, self.val_sides)
        self.hand_on.validated(step, metrics, self.ctx.model)
        self.timings["validation_s"] = self.timings.get("validation_s", 0.0) + time.perf_counter() - started
        self.history.append({"step": step, **metrics})
        self.recorder.validation(step, metrics)
        return metrics

    def train(self, progress: Callable[[int, int], None] | None) -> None:
        s = self.settings
        steps = s.optim.steps
        self.recorder.event("start", start_step=self.start_step, steps=steps, mode=s.mode,
                            train_rows=len(self.train_rows), val_rows=len(self.val_rows))
        self.validate(self.start_step)
        for step in range(self.start_step, steps):
            metrics = run_step(self.ctx, self.train_rows, step, self.train_sides)
            self.recorder.step(metrics)
            self.group_signal.add(metrics["groups"])
            if metrics["skipped"]:
                self._skip(step)
            for key, value in metrics["timings"].items():
                self.timings[key] = self.timings.get(key, 0.0) + value
            done = self.steps_done = step + 1
            if progress is not None:
                progress(done, steps)
            if s.run.checkpoint_every and done % s.run.checkpoint_every == 0 and done < steps:
                self.save_checkpoint(done)
            if done == steps or (s.run.val_every and done % s.run.val_every == 0):
                self.validate(done)

    def _skip(self, step: int) -> None:
        self.skipped += 1
        limit = self.settings.guards.nan_max_skips
        self.recorder.event("nan_skip", step=step + 1, skipped_steps=self.skipped, limit=limit)
        if self.skipped > limit:
            raise StageFailed(
                f"{self.run_dir}: {self.skipped} steps had a NaN/inf loss or gradient (guards.nan_max_skips = "
                f"{limit}); lower optim.lr, check the reward for NaN scores, or raise the limit"
            )

    def save_checkpoint(self, step: int) -> Path:
        state = {"step": step, "skipped_steps": self.skipped, "config_hash": self.config_hash,
                 "mode": self.settings.mode, "saved_at": utc_now()}
        path = save_checkpoint(self.run_dir, step, self.ctx.model, self.ctx.optimizer, self.ctx.scheduler, state)
        self.recorder.event("checkpoint", step=step, path=str(path))
        return path

    def run_record(self, status: str, adapter: Path | None, round_trip: dict[str, Any] | None = None) -> RunRecord:
        """The ``stage2.runs`` entry: a completed run names its adapter, on the base it was trained on."""
        from tradelab.fileio import sha256_dir

        engine_only: dict[str, Any] = {} if round_trip is None else {"adapter_round_trip": round_trip}
        if adapter is not None:
            engine_only["output"] = RunOutput(kind="adapter", path=self.ws.record(adapter) or str(adapter),
                                              sha256=sha256_dir(adapter), base_model_path=self.ws.record(self.base))
        if self.history:
            first, last = self.history[0], self.history[-1]
            engine_only.update(val_reward_start=first["val_reward_mean"], val_reward_end=last["val_reward_mean"],
                               val_format_start=first["val_format_rate"], val_format_end=last["val_format_rate"],
                               val_balanced_start=first["val_reward_balanced"],
                               val_balanced_end=last["val_reward_balanced"],
                               published_step=self.hand_on.step,
                               val_reward_published=self.hand_on.metrics["val_reward_mean"],
                               val_balanced_published=self.hand_on.metrics["val_reward_balanced"],
                               hand_on_reward=self.settings.run.hand_on_reward)
        return RunRecord(
            engine="local", status=status,
            command=cli_command(self.ws.root, self.market, self.settings.mode, self.config.profile,
                                self.resume_from),
            cwd=str(Path.cwd()), env={}, log_file=str(self.recorder.log_file),
            started_at=self.started_at, finished_at=utc_now(), return_code=0 if status == "completed" else 1,
            dataset=RunDataset(paths=self.check.paths, sha256s=self.check.sha256s),
            config_hash=self.config_hash, output_dir=str(self.run_dir), profile=self.config.profile,
            mode=self.settings.mode, resumed_from=str(self.checkpoint) if self.checkpoint else None,
            tensorboard_dir=str(self.run_dir / TENSORBOARD), steps_done=self.steps_done,
            skipped_steps=self.skipped, group_signal=GroupSignal(**self.group_signal.to_dict()), **engine_only,
        )


def train_local(
    root: str | Path,
    market: str,
    config: TradelabConfig,
    *,
    mode: str | None,
    resume_from: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Refine the Stage 1 adapter with GRPO (``discrete``) or SofT-GRPO (``soft``) in this process.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration (``grpo_local`` section drives the run).
        mode: ``soft`` or ``discrete``; None takes ``grpo_local.mode``.
        resume_from: A checkpoint folder or a local run directory (its latest checkpoint) to continue from.
        progress: Called with ``(steps_done, steps_total)`` after each step.

    Returns:
        Summary: run_dir, adapter_path, steps, skipped_steps, mode, val_reward_start/end, val_format_start/end,
        validation history, timings and the manifest run record (``run``, a
        :class:`~tradelab.manifest_schema.RunRecord`).

    Raises:
        StageNotReady: Dataset, base model or Stage 1 adapter missing.
        DataError: Dataset hash mismatch (unless allowed), unreadable data or checkpoint.
        StageFailed: Too many NaN/inf steps, or the run failed after it started (recorded in the manifest).
    """
    run = _Run(Path(root), market, config, mode, resume_from)
    try:
        run.setup()
    except BaseException:
        if getattr(run, "previous", None) is not None:
            restore_process(run.previous)
        raise
    try:
        run.train(progress)
        if run.hand_on.restore(run.ctx.model):
            run.recorder.event("hand_on", step=run.hand_on.step, ranked_by=run.hand_on.figure,
                               val_reward=run.hand_on.reward, last_step=run.steps_done)
        held_out = [row.prompt_ids for row in run.val_rows[:ROUND_TRIP_PROMPTS]]
        engine_values = completion_logprobs(run.ctx.model, run.policy.tokenizer, held_out, PROBE_COMPLETION)
        adapter = publish_adapter(run.ctx.model, run.run_dir, run.ws.soft_grpo_adapter_dir(run.market))
        run.round_trip = adapter_round_trip(engine_values, held_out, run.config, run.ws.root, run.base, adapter,
                                            device=run.policy.device)
        if not run.round_trip["ok"]:
            raise StageFailed(f"{adapter}: loaded as Stage 1 loads it, the published adapter scores held-out "
                              f"prompts {run.round_trip['max_abs_diff']:.3g} nats away from the trained model")
    except BaseException as exc:
        _record_failure(run, exc)
        if isinstance(exc, TradelabError) or not isinstance(exc, Exception):
            raise
        raise StageFailed(f"{run.run_dir}: local GRPO run failed: {exc!r}; see {run.recorder.log_file}") from exc
    finally:
        restore_process(run.previous)
    return _finish(run, adapter)


def _record_failure(run: _Run, exc: BaseException) -> None:
    run.recorder.event("failed", error=repr(exc))
    run.recorder.close()
    append_run(run.ws.root, run.market, run.run_record("failed", None))


def _finish(run: _Run, adapter: Path) -> dict[str, Any]:
    run.timings["total_s"] = time.perf_counter() - run.clock
    record = run.run_record("completed", adapter, run.round_trip)
    first, last = run.history[0], run.history[-1]
    summary = {
        "status": "completed", "run_dir": str(run.run_dir), "adapter_path": str(adapter), "mode": run.settings.mode,
        "steps": run.settings.optim.steps, "start_step": run.start_step, "skipped_steps": run.skipped,
        "val_reward_start": first["val_reward_mean"], "val_reward_end": last["val_reward_mean"],
        "val_format_start": first["val_format_rate"], "val_format_end": last["val_format_rate"],
        "validation": run.history, "timings": run.timings, "config_hash": run.config_hash, "run": record,
        "adapter_round_trip": run.round_trip, "group_signal": run.group_signal.to_dict(),
        "published_step": run.hand_on.step, "val_reward_published": run.hand_on.metrics["val_reward_mean"],
        "val_balanced_start": first["val_reward_balanced"], "val_balanced_end": last["val_reward_balanced"],
        "val_balanced_published": run.hand_on.metrics["val_reward_balanced"],
    }
    run.recorder.event("finished", **{k: v for k, v in summary.items() if k not in ("validation", "run")})
    run.recorder.close()
    append_run(run.ws.root, run.market, record)
    return summary
