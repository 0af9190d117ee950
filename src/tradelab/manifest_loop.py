"""The manifest's ``loop`` section: the Stage 1 -> Stage 2 -> evaluation loop's settings, iterations, lineage and
interruptions (:mod:`tradelab.loop.run` writes it and resumes from it)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tradelab.manifest_sections import (
    BaseModelInfo,
    GroupSignal,
    MutableSection,
    OutputKind,
    Section,
    Status,
)


class LoopSettings(Section):
    """What identifies a loop: a resumed loop must have the same settings.

    Attributes:
        iterations: Iterations to run.
        engine: Stage 2 engine (a name of :data:`tradelab.grpo.ENGINES`).
        seeds: Evaluation seeds per iteration.
        profile: The run profile every stage's config was resolved with (None: recorded before profiles).
        probe_prompts: Holdout prompts the advisor is measured on.
        timesteps: Stage 1 timesteps per iteration (None: the profile's ``ppo.total_timesteps``).
    """

    iterations: int
    engine: str
    seeds: int
    profile: str | None = None
    probe_prompts: int
    timesteps: int | None = None

    def identity(self) -> dict[str, Any]:
        """The settings a resumed loop must share (all but the number of iterations, which may grow)."""
        return self.model_dump(exclude={"iterations"})


class LoopStage1(Section):
    """An iteration's Stage 1 figures: steps, the experience it wrote and the whole file's count, its config hash."""

    timesteps: int | None = None
    experiences: int | None = None
    with_outcome: int | None = None
    experience_samples: int | None = None
    config_hash: str | None = None
    records: dict[str, Any] | None = None
    """What its refinements learned from (:func:`tradelab.loop.power.stage1_records`)."""


class LoopStage2Run(Section):
    """An iteration's Stage 2 run, as the loop report shows it (the full record is in ``stage2.runs``)."""

    engine: str
    status: Status
    output_kind: OutputKind | None = None
    steps: int | None = None
    val_reward_start: float | None = None
    val_reward_end: float | None = None
    run_dir: str | None = None
    group_signal: GroupSignal | None = None
    published_step: int | None = None
    """The step whose weights the run handed on (``grpo_local.run.hand_on``; the local engine only)."""
    val_reward_published: float | None = None
    val_balanced_start: float | None = None
    """The validation's sides-balanced reward at step 0 (:func:`tradelab.grpo.baselines.sides_balanced_mean`)."""
    val_balanced_published: float | None = None
    val_balanced_end: float | None = None
    hand_on_reward: str | None = None
    """Which validation figure ranked the steps (``grpo_local.run.hand_on_reward``)."""


class LoopEvaluation(Section):
    """An iteration's evaluation: its report folder and the agents' loop figures (:func:`tradelab.loop.report
    .agents_from_report`)."""

    report_dir: str
    agents: dict[str, dict[str, Any]]
    hybrid_minus_ppo: dict[str, Any] | None = None
    identical: list[list[str]] = Field(default_factory=list)
    base_model: BaseModelInfo | None = None


class LoopIteration(MutableSection):
    """One turn of the loop: what went in and out of each stage (the lineage) and what was measured.

    The advisor a stage starts from or hands on is a base model and an adapter: ``base_*`` name the base
    (Stage 1 of iteration 1 starts from the configured model; after a full-model engine the next Stage 1 starts from
    that model with a fresh adapter), ``adapter_*`` the adapter. Paths are workspace-relative; ``*_sha256`` are
    :func:`tradelab.fileio.sha256_dir` of the folders. Advisor figures (``advisor_stage1``, ``advisor``) are the
    holdout probe's (:func:`tradelab.loop.probe.score_answers`).

    What an iteration hands on is pinned in the loop's own folder (:mod:`tradelab.loop.lineage`): the PPO model
    (``ppo_out_*``), the Stage 1 adapter, the dataset files (``dataset_paths``) and the Stage 2 weights
    (``adapter_out_path`` / ``base_out_path``), so the next iteration, and a stage redone after an interruption,
    start from exactly what was recorded. ``experience_from_byte`` is where this iteration's Stage 1 began appending
    to the experience file (a redone Stage 1 sets that attempt's records aside first). ``dataset_constant_answers``
    is what a constant BUY, SELL or HOLD advisor scores on each split of the iteration's dataset
    (:class:`tradelab.grpo.baselines.ConstantAnswers`): the reward's own lean, next to the advisor's.
    """

    iteration: int
    stages: dict[str, Status] = Field(default_factory=dict)
    base_in_path: str | None = None
    base_in_sha256: str | None = None
    adapter_in_path: str | None = None
    adapter_in_sha256: str | None = None
    adapter_stage1_sha256: str | None = None
    base_out_path: str | None = None
    base_out_sha256: str | None = None
    adapter_out_path: str | None = None
    adapter_out_sha256: str | None = None
    ppo_init: str | None = None
    dataset_sha256s: dict[str, str] | None = None
    dataset_counts: dict[str, Any] | None = None
    dataset_constant_answers: dict[str, Any] | None = None
    stage1: LoopStage1 | None = None
    stage2_run: LoopStage2Run | None = None
    evaluation: LoopEvaluation | None = None
    advisor_stage1: dict[str, Any] | None = None
    advisor: dict[str, Any] | None = None
    stage2_vs_stage1: dict[str, Any] | None = None
    experience_from_byte: int | None = None
    adapter_stage1_path: str | None = None
    ppo_out_path: str | None = None
    ppo_out_sha256: str | None = None
    dataset_paths: dict[str, str] | None = None


class LoopInterruption(MutableSection):
    """A stop the loop recovered from: where it was, how it ended, and what the resumed loop did about it.

    Attributes:
        found_at: When the resumed loop found it (UTC).
        iteration: The iteration it stopped in (None: before the first, measuring the warm start).
        stage: The stage it stopped in (a :data:`tradelab.loop.run.LOOP_STAGES` name), ``report`` (writing the loop
            report), ``warm_start``, or None (between stages).
        status: ``interrupted`` (killed, Ctrl-C) or ``failed`` (an error).
        error: What was recorded about the stop.
        redo: What the resumed loop did: ``afresh`` (the stage ran again from its recorded inputs), ``continued
            from <checkpoint>`` (the local engine), ``rewritten`` (the report) or ``nothing to redo``.
    """

    found_at: str
    iteration: int | None = None
    stage: str | None = None
    status: Status
    error: str | None = None
    redo: str | None = None


class LoopSection(MutableSection):
    """``loop``: the Stage 1 -> Stage 2 -> evaluation loop's state (:mod:`tradelab.loop.run`); it resumes from it.

    ``loop_id`` names it (stable across resumes; the Stage 1 runs' experience ids derive from it), ``pid`` /
    ``host`` / ``lock_token`` own a ``running`` loop, ``activity`` is what it was doing at its last save and
    ``interruptions`` every stop it recovered from.
    """

    status: Status
    started_at: str | None = None
    completed_at: str | None = None
    settings: LoopSettings
    market_origin: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None
    rule_ceiling: dict[str, Any] | None = None
    """The best simple rule scored on the loop's holdout prompts (:func:`tradelab.loop.power.rule_ceiling`)."""
    constant_floor: dict[str, Any] | None = None
    """Each constant answer scored on the same prompts (:func:`tradelab.loop.power.constant_floor`)."""
    iterations: list[LoopIteration] = Field(default_factory=list)
    report: dict[str, str] | None = None
    report_dir: str
    error: str | None = None
    loop_id: str | None = None
    pid: int | None = None
    host: str | None = None
    lock_token: str | None = None
    activity: str | None = None
    interruptions: list[LoopInterruption] = Field(default_factory=list)
