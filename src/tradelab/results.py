"""What each stage returns to its caller (the CLI, the menu, the loop, the reports), typed once.

The parts a stage also records are the manifest's own types (:mod:`tradelab.manifest_schema`): Stage 1's section,
the Stage 2 dataset entry and run record, the evaluation summary and the loop's iteration. The results below add what
only the caller needs (this run's own counts, where the files went, the command an external engine was given).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tradelab.manifest_schema import RunRecord, Stage1Section


class Result(BaseModel):
    """Base of a stage's result: strict, closed (an unknown field is a programming error) and read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Stage1Paths(Result):
    """Where one Stage 1 run wrote its artifacts (absolute)."""

    model: str
    vecnormalize: str
    checkpoints: str
    experience: str
    adapter: str | None
    tensorboard: str
    manifest: str


class Stage1Result(Result):
    """What :func:`tradelab.stages.stage1` returns.

    Attributes:
        section: The ``stage1`` manifest section as written when the run ended.
        market: Market name.
        run_id: This run's id (experience records carry it).
        timesteps: Env steps the model has done (a resumed run counts its checkpoint's).
        experiences: Experience records this run wrote (``section.experience_samples`` counts the whole file).
        with_outcome: Of those, how many carry a realised outcome.
        resumed_from: The checkpoint a ``--resume`` continued, or None.
        initialized_from: The PPO model an ``--init-ppo`` run continued, or None.
        paths: Where the artifacts went.
        timings: Seconds per phase (``total_s``, ``learn_s``, ...).
        memory: Peak memory (the process's resident set and the adapter trainings').
    """

    section: Stage1Section
    market: str
    run_id: str
    timesteps: int
    experiences: int
    with_outcome: int
    resumed_from: str | None
    initialized_from: str | None
    paths: Stage1Paths
    timings: dict[str, float]
    memory: dict[str, Any]


class DatasetResult(Result):
    """The Stage 2 export a caller shows: counts, where the files went (absolute) and their hashes."""

    counts: dict[str, Any]
    paths: dict[str, str]
    sha256s: dict[str, str]
    profile: str
    malformed_lines: list[dict[str, Any]]
    constant_answers: dict[str, Any]
    """Per split, what a constant BUY, SELL or HOLD advisor scores (:mod:`tradelab.grpo.baselines`)."""
    train_order: dict[str, Any]
    """How the train file's rows were ordered (:class:`tradelab.grpo.train_order.TrainOrder`)."""


class Launch(Result):
    """The command a Stage 2 run is (or would be) given.

    Attributes:
        command: The argv (an external engine), or the in-process call (the local engine) as one item.
        command_line: The same as one copy-pasteable line.
        plan: The external engine's launch plan (:meth:`tradelab.grpo.engines.base.LaunchPlan.to_dict`), or None.
        launch_script: ``launch.sh`` reproducing an external launch, or None.
    """

    command: list[str]
    command_line: str
    plan: dict[str, Any] | None = None
    launch_script: str | None = None


class Stage2Result(Result):
    """What :func:`tradelab.stages.stage2` returns: the export and preflight always, the command unless only the
    dataset was asked for, and the completed run unless it was a dry run."""

    dataset: DatasetResult
    preflight: dict[str, Any]
    launch: Launch | None = None
    run: RunRecord | None = None
