"""Effective settings of a local run: the mode applied to a resolved config's ``grpo_local``."""

from __future__ import annotations

from pathlib import Path

from tradelab.config import TradelabConfig
from tradelab.config.grpo_local_schema import GrpoLocalConfig
from tradelab.errors import ConfigError

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


def cli_command(root: Path, market: str, mode: str, test_mode: bool, resume_from: str | Path | None) -> list[str]:
    """The ``main.py`` argv that starts the same run."""
    argv = ["python", "main.py", "--root", str(root), "stage2", "--market", market, "--engine", "local",
            "--mode", mode]
    if test_mode:
        argv.append("--test")
    if resume_from is not None:
        argv += ["--resume-from", str(resume_from)]
    return argv
