"""Effective settings of a local run: mode and ``--test`` overrides applied to ``config.grpo_local``."""

from __future__ import annotations

from pathlib import Path

from tradelab.config import TradelabConfig
from tradelab.config.grpo_local_schema import GrpoLocalConfig
from tradelab.errors import ConfigError

MODES = ("soft", "discrete")


def effective_settings(config: TradelabConfig, mode: str | None, test_mode: bool) -> GrpoLocalConfig:
    """``config.grpo_local`` with ``mode`` (when given) and, under ``--test``, the ``test`` block applied.

    Raises:
        ConfigError: ``mode`` is not ``soft`` or ``discrete``.
    """
    base = config.grpo_local
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    settings = base.model_copy(update={"mode": mode or base.mode})
    if not test_mode:
        return settings
    t = base.test
    return settings.model_copy(update={
        "cpu_threads": t.cpu_threads,
        "rollout": base.rollout.model_copy(update={"group_size": t.group_size, "max_new_tokens": t.max_new_tokens}),
        "soft": base.soft.model_copy(update={"max_think_tokens": t.max_think_tokens,
                                             "think_start_marker": t.think_start_marker}),
        "optim": base.optim.model_copy(update={"steps": t.steps, "prompts_per_step": t.prompts_per_step,
                                               "lr": t.lr}),
        "run": base.run.model_copy(update={"checkpoint_every": t.checkpoint_every, "val_every": t.val_every,
                                           "val_prompts": t.val_prompts}),
    })


def resolved_config(config: TradelabConfig, settings: GrpoLocalConfig) -> TradelabConfig:
    """The whole config with the effective engine section, as recorded and hashed for the run."""
    return config.model_copy(update={"grpo_local": settings})


def cli_command(root: Path, market: str, mode: str, test_mode: bool, resume_from: str | Path | None) -> list[str]:
    """The ``main.py`` argv that starts the same run."""
    argv = ["python", "main.py", "--root", str(root), "stage2", "--market", market, "--engine", "local",
            "--mode", mode]
    if test_mode:
        argv.append("--test")
    if resume_from is not None:
        argv += ["--resume-from", str(resume_from)]
    return argv
