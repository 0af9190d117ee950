"""The interface every Stage 2 engine implements: plan, command, run, and the engine's own preflight checks.

The runner and preflight call these methods instead of testing an engine's name; each engine module
(:mod:`.verl`, :mod:`.soft_grpo`, :mod:`.local`) subclasses :class:`Engine` (the external ones through
:class:`tradelab.grpo.engines.launch.ExternalEngine`) once. Every engine's :meth:`Engine.run` ends the same way: a
completed :class:`~tradelab.manifest_schema.RunRecord` whose ``output`` names what the next Stage 1 and evaluation
load (an adapter on its base, or a whole model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.config import TradelabConfig
from tradelab.grpo.checks import Check
from tradelab.grpo.engines import base
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.manifest_schema import OutputKind, RunRecord
    from tradelab.results import DatasetResult, Launch

RunArgv = Callable[[list[str]], int]
"""Runs one command in the launch's environment, streaming its output to the run log; returns the exit code."""
LineSink = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunRequest:
    """What a caller asks of one Stage 2 run.

    Attributes:
        dataset: The export the run trains on.
        mode: Rollout mode, for an engine with :attr:`Engine.rollout_modes`; None = its config.
        resume_from: A checkpoint to continue (the local engine).
        on_line: Receives each line of an external engine's output.
        progress: Receives ``(steps done, steps)`` from an in-process engine.
    """

    dataset: DatasetResult
    mode: str | None = None
    resume_from: str | Path | None = None
    on_line: LineSink | None = None
    progress: Progress | None = None


class Engine:
    """One Stage 2 engine: its plan, its command, its run and its engine-specific checks.

    :mod:`tradelab.grpo.engines.registry` holds one instance per engine; the runner and preflight ask it instead of
    testing the engine's name.

    Attributes:
        name: The CLI name ("verl", "soft-grpo", "local").
        config_key: The engine's key under ``soft_grpo.engines`` (external engines).
        output_kind: What a completed run hands back (:data:`tradelab.manifest_schema.OutputKind`).
        rollout_modes: Rollout modes a run may choose (the menu asks for one when there are several).
        flash_attn_required: Without flash-attn's Triton cross-entropy the engine crashes or silently degrades.
        soft_thinking_rollout: An sglang rollout must be the soft-thinking fork.
    """

    name: str = ""
    config_key: str = ""
    output_kind: OutputKind = "adapter"
    rollout_modes: tuple[str, ...] = ()
    flash_attn_required: bool = False
    soft_thinking_rollout: bool = False

    def build_plan(self, root: str | Path, market: str, config: TradelabConfig, *,
                   python: str | None = None, extra_overrides: list[str] | None = None) -> base.LaunchPlan | None:
        """The launch for ``market``, or None for an engine that trains in this process (nothing is checked or
        created here; preflight does that)."""
        return None

    def launch(self, plan: base.LaunchPlan | None, request: RunRequest) -> Launch:
        """The command a run of ``request`` is given (what ``--dry-run`` shows and the run records)."""
        raise NotImplementedError

    def run(self, ws: Workspace, market: str, config: TradelabConfig, plan: base.LaunchPlan | None,
            request: RunRequest) -> RunRecord:
        """Train, export the weights, record the run in ``stage2.runs`` and return its completed record.

        Raises:
            StageFailed: The run failed or left no usable weights (it is recorded as failed or interrupted).
        """
        raise NotImplementedError

    def interrupted_checkpoint(self, ws: Workspace, market: str, record: RunRecord) -> Path | None:
        """The last checkpoint an attempt of this engine left when its process was killed (``record`` is its
        ``running`` entry), for a re-run to continue; None when the engine cannot continue one."""
        return None

    def prepare(self, ws: Workspace, market: str, plan: base.LaunchPlan) -> str | None:
        """Build what the launch needs before it starts; a line for the run log, or None."""
        return None

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
