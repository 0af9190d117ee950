"""The Stage 1 entry point and one run's state: train the hybrid agent for one market and export what Stage 2 needs.

:func:`run_stage1` trains MaskablePPO with the fusion policy over the train split, queries the advisor selectively
and in batches, records and resolves experience, refines the LoRA adapter on it, checkpoints periodically, and keeps
the manifest's ``data`` and ``stage1`` sections current (``running`` -> ``completed`` / ``interrupted`` / ``failed``).
:class:`Stage1Run` holds what one run builds, trains, saves and reports.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradelab.config import config_hash
from tradelab.errors import StageFailed, StageNotReady, TradelabError, WorkspaceError
from tradelab.fileio import sha256_dir, staged_dir
from tradelab.manifest import load_manifest, merge_stage1, set_section, stage1_of
from tradelab.manifest_schema import Stage1Section
from tradelab.paths import Workspace
from tradelab.provenance import git_sha, package_versions, utc_now, utc_stamp
from tradelab.results import Stage1Paths, Stage1Result
from tradelab.attempts import market_writer, stage1_experience_start
from tradelab.runlock import LockOwner
from tradelab.stage1.preconditions import last_completed, refuse_downgrade, require_data, sigterm_as_interrupt
from tradelab.stage1.sections import count_experience, data_section, stage1_section
from tradelab.stage1.wiring import REFINING_ADAPTER_DIR, RunSettings, run_settings
from tradelab.threads import torch_threads

log = logging.getLogger(__name__)


def run_stage1(
    root: str | Path,
    market: str,
    config: Any,
    *,
    total_timesteps: int | None = None,
    resume: bool = False,
    init_ppo: Path | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    run_id: str | None = None,
) -> Stage1Result:
    """Train Stage 1 for ``market`` and record it in the manifest.

    Args:
        root: Workspace root.
        market: Market name (its bars must exist under ``data/<MKT>/``).
        config: The whole :class:`~tradelab.config.TradelabConfig`, its run profile already laid over it.
        total_timesteps: Target env steps (all envs together); default from config. On resume, the total to reach.
        resume: Continue from the latest checkpoint under ``ppo/checkpoints/`` (a fresh start if there is none).
        init_ppo: Continue training this saved PPO model (``final.zip`` with ``vecnormalize.pkl`` beside it) for
            ``total_timesteps`` more steps instead of starting from a fresh one (never a downgrade).
        force: Start afresh even when that replaces a completed model trained for more timesteps.
        progress: Called with ``(timesteps_done, total_timesteps)`` after each vector step.
        run_id: The id this run's experience records carry (None: ``s1-<MKT>-<UTC>``); the loop gives one that
            depends only on the loop and the iteration, so a redone run writes the same records.

    Returns:
        The completed ``stage1`` section with this run's own figures and paths.

    Raises:
        StageNotReady: The market has no data.
        WorkspaceError: Another process writes this market (the market lock), or the run would replace a completed
            model trained for more timesteps without ``force``.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after a checkpoint, the buffer flush and ``status = "interrupted"``.
        StageFailed: Training failed (recorded as ``status = "failed"``); other TradelabErrors pass through.
    """
    root = Workspace.at(root).root
    require_data(root, market)
    run = Stage1Run(root, market, config, total_timesteps=total_timesteps, resume=resume,
                    init_ppo=init_ppo, run_id=run_id)
    with market_writer(root, market, "stage1") as me:
        section = stage1_of(load_manifest(root, market))
        previous = last_completed(section)
        refuse_downgrade(root, market, previous, run.settings.total_timesteps, resume=resume,
                          force=force or init_ppo is not None)
        run.check_resume()
        if run.config.stage1.use_advisor:  # a bad .gguf or a missing wheel stops the run before it writes anything
            from tradelab.advisor.bases import resolve_gguf_base

            resolve_gguf_base(run.config.llm.base_model, root)
        run.owner, run.last_completed = me, previous
        run.experience_from_byte = stage1_experience_start(root, market, section, resume=resume, run_id=run.run_id)
        return _train(run, root, market, config, progress)


def _train(run: Any, root: Path, market: str, config: Any, progress: Callable[[int, int], None] | None
           ) -> Stage1Result:
    """Record ``running``, train, and record how it ended (the caller holds the market's Stage 1 lock)."""
    set_section(root, market, "data", run.data_section())
    merge_stage1(root, market, run.manifest_fields("running"))
    try:
        with sigterm_as_interrupt(), torch_threads(config.ppo.torch_threads):
            run.build()
            run.learn(progress)
            summary = run.finish()
    except KeyboardInterrupt:
        run.save_interrupted()
        merge_stage1(root, market, {**run.manifest_fields("interrupted"), "error": "interrupted by the user"})
        raise
    except Exception as exc:
        run.close_buffer()
        merge_stage1(root, market, {**run.manifest_fields("failed"), "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, TradelabError):
            raise
        raise StageFailed(f"stage1 for {market} failed: {type(exc).__name__}: {exc} (see logs/app.log)") from exc
    merge_stage1(root, market, summary.section.record())
    return summary


class Stage1Run:
    """Builds and drives one Stage 1 training run.

    Args:
        root: Workspace root (resolved).
        market: Market name.
        config: The whole config.
        total_timesteps: Target env steps, or None for the configured value.
        resume: Continue from the latest checkpoint if there is one.
        init_ppo: Start from this PPO model (``final.zip``, its ``vecnormalize.npz`` beside it) and train
            ``total_timesteps`` more, instead of a fresh model. Ignored when resuming from a checkpoint.
        run_id: The id the run's experience records carry; None makes one from the market and the time.
    """

    def __init__(self, root: Path, market: str, config: Any, *, total_timesteps: int | None, resume: bool,
                 init_ppo: Path | None = None, run_id: str | None = None) -> None:
        from tradelab.marketdata import load_market_arrays

        self.root, self.market, self.config = root, market, config
        self.ws = Workspace.at(root)
        self.resume = resume
        self.settings: RunSettings = run_settings(self.config, total_timesteps=total_timesteps)
        self.seed = int(config.app.seed)
        self.run_id = run_id or f"s1-{market}-{utc_stamp()}"
        self.started_at = utc_now()
        self.arrays = load_market_arrays(root, market, config)
        self.ppo_dir = self.ws.ppo_dir(market)
        self.checkpoints_dir = self.ppo_dir / "checkpoints"
        self.model: Any = None
        self.vecnorm: Any = None
        self.advice_env: Any = None
        self.recorder: Any = None
        self.history_loaded: dict[str, int] | None = None
        self.hindsight_pool: int | None = None
        self.bundle: Any = None
        self.callback: Any = None
        self.resumed_from: str | None = None
        self.init_ppo = Path(init_ppo) if init_ppo is not None else None
        self.initialized_from: str | None = None
        self.timings: dict[str, float] = {}
        self.owner: LockOwner | None = None
        self.experience_from_byte: int | None = None
        self.last_completed: Stage1Section | None = None
        self.model_sha256: str | None = None
        self._t0 = time.perf_counter()
        self._buffer_closed = False

    # --- build ---------------------------------------------------------------------------------------------------
    def data_section(self) -> dict[str, Any]:
        """The manifest's ``data`` section for this market."""
        return data_section(self.root, self.market, self.arrays)

    def build(self) -> None:
        """Seed everything, load the advisor, build the env stack and the model (fresh or from a checkpoint)."""
        from stable_baselines3.common.logger import configure
        from stable_baselines3.common.utils import set_random_seed

        from tradelab.stage1.callbacks import Checkpointer, Refiner, Stage1Callback
        from tradelab.stage1.wiring import advice_vec_env, env_fns, load_advisor, recorder_for
        from tradelab.stage1.advice import LLMAdviceSource
        from tradelab.stage1.hindsight import run_pool

        s, stage1 = self.settings, self.config.stage1
        set_random_seed(self.seed)
        if not self.resume:  # an interrupted run's refined adapter is for --resume only
            shutil.rmtree(self.ws.market_model_dir(self.market) / REFINING_ADAPTER_DIR, ignore_errors=True)
        started = time.perf_counter()
        if stage1.use_advisor:
            self.bundle = load_advisor(self.root, self.market, self.config, seed=self.seed, resume=self.resume)
        self.timings["advisor_setup_s"] = round(time.perf_counter() - started, 3)
        self.recorder = recorder_for(self.root, self.market, self.config, self.arrays, run_id=self.run_id,
                                     recent_maxlen=s.refinement_recent_records) if self.bundle else None
        if self.recorder is not None and stage1.refinement.enabled and stage1.refinement.history == "market":
            self.history_loaded = self.recorder.preload_history()
        fns = env_fns(self.root, self.market, self.config, self.arrays, n_envs=s.n_envs, seed=self.seed,
                      split="train")
        source = LLMAdviceSource(self.bundle.advisor) if self.bundle else None
        self.advice_env = advice_vec_env(fns, stage1, source=source, recorder=self.recorder,
                                          interval_bars=s.interval_bars)
        self._model_and_stats()
        self.model.set_logger(configure(str(self.ws.stage1_tensorboard_dir(self.market)), ["tensorboard"]))
        checkpointer = Checkpointer(self.checkpoints_dir, s.checkpoint_every_steps, self.model.num_timesteps)
        refiner = None
        if self.bundle is not None and stage1.refinement.enabled:
            hindsight = run_pool(self.root, self.market, self.config, self.arrays, seed=self.seed)
            self.hindsight_pool = None if hindsight is None else len(hindsight)
            refiner = Refiner(
                advisor=self.bundle.advisor, recorder=self.recorder, config=self.config,
                base_dir=self.bundle.base_dir, adapter_path=self.bundle.adapter_path,
                out_dir=self.ws.market_model_dir(self.market) / REFINING_ADAPTER_DIR,
                every_steps=s.refinement_every_steps,
                recent_records=s.refinement_recent_records, min_records=s.refinement_min_records,
                epochs=s.refinement_epochs, seed=self.seed, hindsight=hindsight,
                hindsight_bars=stage1.refinement.hindsight_bars,
            )
        self.callback = Stage1Callback(
            advice_env=self.advice_env, vecnorm=self.vecnorm, recorder=self.recorder, checkpointer=checkpointer,
            refiner=refiner, progress=None, total_timesteps=s.total_timesteps,
        )

    def check_resume(self) -> None:
        """Verify the checkpoint ``--resume`` would load, before the slow build (advisor, envs) starts.

        Raises:
            WorkspaceError: Its model zip has no recorded sha256 or changed since it was written, or its statistics
                are not loadable.
        """
        from tradelab.integrity import verify_sha256
        from tradelab.stage1.callbacks import Checkpointer

        latest = Checkpointer.latest(self.checkpoints_dir) if self.resume else None
        if latest is not None:
            verify_sha256(latest[0], fix=f"delete it to resume from an earlier checkpoint, or run stage1 for "
                                         f"{self.market} without --resume")

    def _model_and_stats(self) -> None:
        from tradelab.stage1.callbacks import Checkpointer
        from tradelab.stage1.wiring import new_model, normalized

        latest = Checkpointer.latest(self.checkpoints_dir) if self.resume else None
        if latest is None and self.init_ppo is not None:
            self._load(self.init_ppo, self.init_ppo.with_name("vecnormalize.npz"),
                       fix=f"run stage1 for {self.market} without --init-ppo to train a fresh model")
            # A continued model trains the full budget again: its step counter restarts, its weights do not.
            self.model.num_timesteps = 0
            self.model.set_random_seed(self.seed)
            self.initialized_from = str(self.init_ppo)
            log.info("stage1 continues the PPO model %s", self.init_ppo)
            return
        if latest is None:
            if self.resume:
                log.info("stage1 --resume: no checkpoint under %s, starting fresh", self.checkpoints_dir)
            self.vecnorm = normalized(self.advice_env, self.config.ppo)
            self.model = new_model(self.vecnorm, self.config, self.settings, seed=self.seed)
            self.resumed_from = None
            return
        model_path, stats_path, steps = latest
        self._load(model_path, stats_path, fix=f"delete it to resume from an earlier checkpoint, or run stage1 for "
                                                f"{self.market} without --resume")
        self.model.set_random_seed(self.seed + steps)
        self.resumed_from = str(model_path)
        log.info("stage1 resuming from %s (%d steps)", model_path, steps)

    def _load(self, model_path: Path, stats_path: Path, *, fix: str) -> None:
        """Load a saved PPO model (its recorded sha256 verified first) and its statistics onto this run's envs."""
        from sb3_contrib import MaskablePPO

        from tradelab.errors import StageNotReady
        from tradelab.integrity import verify_sha256
        from tradelab.stage1.vecnorm import load_stats

        for path in (model_path, stats_path):
            if not Path(path).is_file():
                raise StageNotReady(f"{path}: no such file; continuing a PPO model needs its final.zip and the "
                                    f"vecnormalize.npz saved beside it; {fix}")
        verify_sha256(model_path, fix=fix)
        self.vecnorm = load_stats(stats_path, self.advice_env)
        self.vecnorm.training = True
        self.model = MaskablePPO.load(str(model_path), env=self.vecnorm, device=self.config.ppo.device)

    # --- train ---------------------------------------------------------------------------------------------------
    def learn(self, progress: Callable[[int, int], None] | None) -> None:
        """Train until ``total_timesteps`` env steps (counting those of a resumed checkpoint)."""
        self.callback.progress = progress
        remaining = self.settings.total_timesteps - int(self.model.num_timesteps)
        started = time.perf_counter()
        if remaining > 0:
            self.model.learn(remaining, callback=self.callback, reset_num_timesteps=self.resumed_from is None)
        self.timings["learn_s"] = round(time.perf_counter() - started, 3)

    def finish(self) -> Stage1Result:
        """Flush the buffer, then publish the final model, statistics and adapter together; return the summary.

        Every output is written in full before any of them replaces the last completed run's: the adapter is copied
        into a staging folder and the model pair into temporary files, and only then are they moved into place, so
        a disk that fills up (or any error) while publishing leaves the previous model, statistics and adapter as
        they were.
        """
        from tradelab.stage1.callbacks import save_model

        self.close_buffer()
        with self._staged_adapter():
            self.model_sha256 = save_model(self.model, self.vecnorm, self.ppo_dir / "final.zip",
                                           self.ppo_dir / "vecnormalize.npz")
        self.timings["total_s"] = round(time.perf_counter() - self._t0, 3)
        return self.summary("completed")

    @contextmanager
    def _staged_adapter(self) -> Iterator[None]:
        """Stage ``stage1_lora`` as the adapter in use at the end (the last refinement's, or a copy of the start
        adapter when none ran); it replaces the old one when the block succeeds."""
        lora = self.ws.stage1_lora_dir(self.market)
        current = Path(self.bundle.advisor.adapter_path or self.bundle.adapter_path) if self.bundle else None
        if current is None or current.resolve() == lora.resolve():
            yield
            return
        with staged_dir(lora) as staging:
            shutil.copytree(current, staging, dirs_exist_ok=True)
            yield

    def save_interrupted(self) -> None:
        """Checkpoint at the current step and flush the buffer (``outcome: null`` for unresolved records)."""
        if self.model is not None and self.vecnorm is not None:
            try:
                self.callback.checkpointer.save(self.model, self.vecnorm, int(self.model.num_timesteps))
            except Exception:  # noqa: BLE001 - the interrupt is what gets reported; the buffer must still flush
                log.exception("stage1: could not save the interrupt checkpoint")
        self.close_buffer()

    def close_buffer(self) -> None:
        """Write every resolved and pending experience record (idempotent)."""
        if self.recorder is not None and not self._buffer_closed:
            self._buffer_closed = True
            self.recorder.close()

    # --- report --------------------------------------------------------------------------------------------------
    def _stats(self) -> dict[str, Any]:
        if self.advice_env is None:
            return {"llm_stats": None, "hybrid_stats": None}
        stats = self.advice_env.stats.summary()
        if self.bundle is not None:
            stats["llm_stats"]["advisor"] = self.bundle.advisor.stats.to_dict()
        history = self.callback.refiner.history if self.callback and self.callback.refiner else []
        stats["llm_stats"]["refinements"] = history
        stats["llm_stats"]["refinement_history"] = self.history_loaded
        stats["llm_stats"]["hindsight_pool_bars"] = self.hindsight_pool
        return stats

    def manifest_fields(self, status: str) -> dict[str, Any]:
        """The full ``stage1`` section for ``status``."""
        from tradelab.advisor.prompts import template_hash

        exp_path = self.ws.experience_path(self.market)
        samples, with_outcome = count_experience(exp_path)
        lora = self.ws.stage1_lora_dir(self.market)
        has_lora = (lora / "adapter_config.json").is_file()
        stats = self._stats()
        base = None
        if self.bundle is not None:
            base = dict(self.bundle.advisor.model_info())
            base["local_path"] = self.ws.record(base.get("local_path"))
        record = self.ws.record
        return stage1_section(
            status=status, started_at=self.started_at,
            completed_at=utc_now() if status == "completed" else None, profile=self.config.profile,
            total_timesteps=int(self.model.num_timesteps) if self.model is not None else 0, seed=self.seed,
            config_hash=config_hash(self.config), git_sha=git_sha(), versions=package_versions(),
            model_checkpoint=record(self.ppo_dir / "final.zip"),
            vecnormalize_path=record(self.ppo_dir / "vecnormalize.npz"),
            checkpoints_dir=record(self.checkpoints_dir), base_model=base,
            lora_adapter_path=record(lora) if has_lora else None,
            adapter_sha256=sha256_dir(lora) if has_lora else None,
            experience_path=record(exp_path), experience_samples=samples, experience_with_outcome=with_outcome,
            pid=self.owner.pid if self.owner else None, host=self.owner.host if self.owner else None,
            lock_token=self.owner.token if self.owner else None, run_id=self.run_id,
            experience_from_byte=self.experience_from_byte,
            model_sha256=self.model_sha256 if status == "completed" else None,
            last_completed=None if status == "completed" or self.last_completed is None
            else {k: v for k, v in self.last_completed.record().items() if k != "last_completed"},
            llm_stats=stats["llm_stats"], hybrid_stats=stats["hybrid_stats"],
            prompts={"system": self.config.llm.prompts.system, "template_hash": template_hash(self.config)},
        )

    def summary(self, status: str) -> Stage1Result:
        """What :func:`run_stage1` returns: the ``stage1`` manifest section plus this run's own figures.

        ``section.experience_samples`` / ``section.experience_with_outcome`` count the whole JSONL (every run);
        ``experiences`` / ``with_outcome`` count what this run wrote.
        """
        rec = self.recorder
        return Stage1Result(
            section=Stage1Section.model_validate({**self.manifest_fields(status), "error": None}),
            market=self.market, run_id=self.run_id, timesteps=int(self.model.num_timesteps),
            resumed_from=self.resumed_from, initialized_from=self.initialized_from,
            experiences=rec.written if rec else 0, with_outcome=rec.written_with_outcome if rec else 0,
            paths=Stage1Paths(
                model=str(self.ppo_dir / "final.zip"), vecnormalize=str(self.ppo_dir / "vecnormalize.npz"),
                checkpoints=str(self.checkpoints_dir), experience=str(self.ws.experience_path(self.market)),
                adapter=str(self.ws.stage1_lora_dir(self.market)) if self.bundle else None,
                tensorboard=str(self.ws.stage1_tensorboard_dir(self.market)),
                manifest=str(self.ws.manifest_path(self.market)),
            ),
            timings={k: float(v) for k, v in self.timings.items()}, memory=self.memory(),
        )

    def memory(self) -> dict[str, Any]:
        """Peak memory: the process's lifetime peak resident set, and the largest adapter-training peak of this run
        (the initial adapter's own training, when it was trained, and every refinement), with how it was measured."""
        from tradelab.advisor.memory import process_peak_rss_mb
        from tradelab.advisor.train import read_training_summary

        trainings = []
        if self.bundle is not None:
            trainings.append(read_training_summary(self.bundle.adapter_path))
        history = self.callback.refiner.history if self.callback and self.callback.refiner else []
        peaks = [float(t.get("peak_memory_mb") or 0.0) for t in trainings] + [
            float(h.get("peak_memory_mb") or 0.0) for h in history]
        kind = next((t.get("peak_memory_kind") for t in trainings if t.get("peak_memory_kind")), None)
        return {"process_peak_rss_mb": round(process_peak_rss_mb(), 1),
                "adapter_training_peak_mb": max(peaks, default=0.0), "adapter_training_peak_kind": kind}
