"""The interface every Stage 2 engine implements: plan, prepare step, output export and engine-specific checks.

The runner and preflight call these methods instead of testing an engine's name; each engine module
(:mod:`.verl`, :mod:`.soft_grpo`, :mod:`.local`) subclasses :class:`Engine` once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.errors import TradelabError
from tradelab.grpo.checks import Check
from tradelab.grpo.engines import base
from tradelab.paths import Workspace

RunArgv = Callable[[list[str]], int]
"""Runs one command in the launch's environment, streaming its output to the run log; returns the exit code."""


class Engine:
    """One Stage 2 engine: its plan, its prepare step, its output export and its engine-specific checks.

    :mod:`tradelab.grpo.engines.registry` holds one instance per engine; the runner and preflight ask it instead of
    testing the engine's name.

    Attributes:
        name: The CLI name ("verl", "soft-grpo", "local").
        external: Launched as a subprocess from a :class:`base.LaunchPlan` (False: trained in-process).
        config_key: The engine's key under ``soft_grpo.engines`` (external engines).
        output_key: The ``stage2.runs`` field that records the exported weights.
        flash_attn_required: Without flash-attn's Triton cross-entropy the engine crashes or silently degrades.
        soft_thinking_rollout: An sglang rollout must be the soft-thinking fork.
    """

    name: str = ""
    external: bool = True
    config_key: str = ""
    output_key: str = "adapter_path"
    flash_attn_required: bool = False
    soft_thinking_rollout: bool = False

    def build_plan(self, root: str | Path, market: str, config: TradelabConfig, *, test_mode: bool,
                   python: str | None = None, extra_overrides: list[str] | None = None) -> base.LaunchPlan:
        """The launch for ``market`` (nothing is checked or created here; preflight does that)."""
        raise TradelabError(f"engine {self.name!r} has no launch plan; choose verl or soft-grpo")

    def prepare(self, ws: Workspace, market: str, plan: base.LaunchPlan) -> str | None:
        """Build what the launch needs before it starts; a line for the run log, or None."""
        return None

    def export_output(self, ws: Workspace, market: str, plan: base.LaunchPlan, run: RunArgv,
                      started_epoch_s: float) -> tuple[Path | None, str | None]:
        """Find, verify and copy a finished run's weights: ``(path, None)`` or ``(None, why nothing is usable)``."""
        raise TradelabError(f"engine {self.name!r} exports its own output")

    def plan_checks(self, ws: Workspace, market: str, config: TradelabConfig, plan: base.LaunchPlan) -> list[Check]:
        """Checks of the engine's own inputs, run before the launch environment is probed."""
        return []

    def context_model_dir(self, ws: Workspace, market: str, plan: base.LaunchPlan) -> Path | None:
        """The model folder whose context length bounds prompt + response."""
        return plan.model_path

    def pitfalls(self, values: Mapping[str, Any]) -> Check:
        """Settings that run but train wrongly with this engine."""
        raise NotImplementedError

    def artifact_checks(self, ws: Workspace, market: str, plan: base.LaunchPlan,
                        timeout_s: int) -> tuple[list[Check], dict[str, Any] | None]:
        """Prove the engine's model folder reads identically under the launch interpreter; checks and details."""
        raise NotImplementedError
