"""The Stage 1 entry point: train the hybrid agent for one market and export what Stage 2 needs.

:func:`run_stage1` trains MaskablePPO with the fusion policy over the train split, queries the advisor selectively
and in batches, records and resolves experience, refines the LoRA adapter on it, checkpoints periodically, and keeps
the manifest's ``data`` and ``stage1`` sections current (``running`` -> ``completed`` / ``interrupted`` / ``failed``).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradelab.errors import StageFailed, StageNotReady, TradelabError, WorkspaceError
from tradelab.manifest import load_manifest, merge_stage1, set_section
from tradelab.paths import Workspace
from tradelab.runlock import stage1_lock

log = logging.getLogger(__name__)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while training, so both take the same save-and-record path."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Use ``threads`` torch CPU threads inside the block (0: leave torch's setting), restoring it afterwards."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _require_data(root: Path, market: str) -> None:
    bars = Workspace.at(root).bars_path(market)
    if not bars.is_file():
        raise StageNotReady(
            f"{bars}: no bars for market {market}; create them with `python main.py data generate --market {market}` "
            f"or `python main.py data import PATH --market {market}`, then run stage1 again"
        )


def last_completed(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The most recent completed ``stage1`` section: ``section`` itself, or the one it keeps in ``last_completed``."""
    if not isinstance(section, dict):
        return None
    if section.get("status") == "completed":
        return {k: v for k, v in section.items() if k != "last_completed"}
    previous = section.get("last_completed")
    return previous if isinstance(previous, dict) and previous.get("status") == "completed" else None


def _refuse_downgrade(root: Path, market: str, previous: dict[str, Any] | None, target: int, *, resume: bool,
                      force: bool) -> None:
    """A fresh run must not replace a completed model trained for more timesteps unless asked (``--force``)."""
    if previous is None or resume or force:
        return
    done = previous.get("total_timesteps")
    if isinstance(done, int) and done > target:
        model = Workspace.at(root).ppo_dir(market) / "final.zip"
        raise WorkspaceError(
            f"{model}: holds a completed Stage 1 run of {done} timesteps (completed {previous.get('completed_at')}); "
            f"this run would replace it with one of {target}. Pass --force to replace it, --resume to continue "
            f"from the latest checkpoint, or use another --root"
        )


def run_stage1(
    root: str | Path,
    market: str,
    config: Any,
    *,
    test_mode: bool,
    total_timesteps: int | None = None,
    resume: bool = False,
    init_ppo: Path | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train Stage 1 for ``market`` and record it in the manifest.

    Args:
        root: Workspace root.
        market: Market name (its bars must exist under ``data/<MKT>/``).
        config: The whole :class:`~tradelab.config.TradelabConfig`.
        test_mode: Use the ``ppo.test`` / ``stage1.test`` overrides (tiny, fast).
        total_timesteps: Target env steps (all envs together); default from config. On resume, the total to reach.
        resume: Continue from the latest checkpoint under ``ppo/checkpoints/`` (a fresh start if there is none).
        init_ppo: Continue training this saved PPO model (``final.zip`` with ``vecnormalize.pkl`` beside it) for
            ``total_timesteps`` more steps instead of starting from a fresh one (never a downgrade).
        force: Start afresh even when that replaces a completed model trained for more timesteps.
        progress: Called with ``(timesteps_done, total_timesteps)`` after each vector step.

    Returns:
        Summary: ``market, status, timesteps, experiences, with_outcome, paths, timings, llm_stats, hybrid_stats,
        refinements``.

    Raises:
        StageNotReady: The market has no data.
        WorkspaceError: Another Stage 1 run holds the market's lock, or the run would replace a completed model
            trained for more timesteps without ``force``.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after a checkpoint, the buffer flush and ``status = "interrupted"``.
        StageFailed: Training failed (recorded as ``status = "failed"``); other TradelabErrors pass through.
    """
    from tradelab.stage1.run import Stage1Run

    root = Workspace.at(root).root
    _require_data(root, market)
    run = Stage1Run(root, market, config, test_mode=test_mode, total_timesteps=total_timesteps, resume=resume,
                    init_ppo=init_ppo)
    with stage1_lock(root, market, started_at=run.started_at) as me:
        manifest = load_manifest(root, market)
        previous = last_completed(manifest["stage1"] if manifest is not None else None)
        _refuse_downgrade(root, market, previous, run.settings.total_timesteps, resume=resume,
                          force=force or init_ppo is not None)
        run.check_resume()
        run.owner, run.last_completed = me, previous
        return _train(run, root, market, config, progress)


def _train(run: Any, root: Path, market: str, config: Any, progress: Callable[[int, int], None] | None
           ) -> dict[str, Any]:
    """Record ``running``, train, and record how it ended (the caller holds the market's Stage 1 lock)."""
    set_section(root, market, "data", run.data_section())
    merge_stage1(root, market, run.manifest_fields("running"))
    try:
        with _sigterm_as_interrupt(), _torch_threads(config.ppo.torch_threads):
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
    merge_stage1(root, market, {**run.manifest_fields("completed"), "error": None})
    return summary

