"""The manifest's stage sections (ARCHITECTURE.md §11) and the vocabulary every section shares.

:mod:`tradelab.manifest_schema` assembles them, with the loop's (:mod:`tradelab.manifest_loop`), into the whole
manifest and says how reading and writing treat undeclared keys.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["running", "completed", "interrupted", "failed"]
"""How a recorded piece of work ended (or that it is still running): Stage 1, a Stage 2 run, the loop and its stages.
A run whose process was killed is ``interrupted``, never left ``running``."""

STATUSES: tuple[str, ...] = get_args(Status)
"""The :data:`Status` vocabulary, in order."""

OutputKind = Literal["adapter", "full_model"]
"""What a Stage 2 engine hands back: a LoRA adapter on its base (local, verl) or a whole model (the SofT-GRPO fork,
whose sglang rollout cannot sync LoRA weights)."""


class Section(BaseModel):
    """Base of every manifest model: unknown keys are kept on read, declared ones are type-checked strictly."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    def record(self) -> dict[str, Any]:
        """The JSON object kept in the manifest: the keys that were set, in declaration order."""
        return self.model_dump(mode="json", exclude_unset=True)


class MutableSection(Section):
    """A section a running stage updates field by field (the loop's state); assignments are type-checked."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=False, validate_assignment=True)


class DataSection(Section):
    """``data``: the market's bar file and its train / holdout split (times in New York, ISO-8601)."""

    bars_path: str | None = None
    sha256: str | None = None
    rows: int | None = None
    start: str | None = None
    end: str | None = None
    train_end: str | None = None
    holdout_start: str | None = None
    origin: dict[str, Any] | None = None


class BaseModelInfo(Section):
    """``stage1.base_model``: the advisor's base LLM (:func:`tradelab.advisor.bases.model_info`): ``sha256`` is the
    source GGUF file's for a converted base and the folder's otherwise, as ``source`` says."""

    name: str | None = None
    local_path: str | None = None
    smoke_test_model: bool | None = None
    sha256: str | None = None
    source: str | None = None


class Stage1Section(Section):
    """``stage1``: one Stage 1 run (paths are workspace-relative, :meth:`tradelab.paths.Workspace.resolve`).

    ``pid``/``host``/``lock_token`` own a ``running`` run (:func:`tradelab.runlock.record_liveness`; one whose
    process is gone is marked ``interrupted``); ``last_completed`` keeps the previous completed section while a newer
    run is not completed, since its ``final.zip`` is still on disk; ``error`` says why a run that did not complete
    stopped. ``run_id`` is the id its experience records carry, and ``experience_from_byte`` where in the experience
    file this run (with the runs a ``--resume`` continued) began appending: a fresh run that replaces it sets
    those records aside (:mod:`tradelab.setaside`).
    """

    status: Status | None = None
    started_at: str | None = None
    completed_at: str | None = None
    profile: str | None = None
    total_timesteps: int | None = None
    seed: int | None = None
    config_hash: str | None = None
    git_sha: str | None = None
    versions: dict[str, Any] | None = None
    model_checkpoint: str | None = None
    vecnormalize_path: str | None = None
    checkpoints_dir: str | None = None
    base_model: BaseModelInfo | None = None
    lora_adapter_path: str | None = None
    adapter_sha256: str | None = None
    experience_path: str | None = None
    experience_samples: int | None = None
    experience_with_outcome: int | None = None
    llm_stats: dict[str, Any] | None = None
    hybrid_stats: dict[str, Any] | None = None
    prompts: dict[str, Any] | None = None
    pid: int | None = None
    host: str | None = None
    model_sha256: str | None = None
    last_completed: Stage1Section | None = None
    error: str | None = None
    lock_token: str | None = None
    run_id: str | None = None
    experience_from_byte: int | None = None


STAGE1_KEYS: tuple[str, ...] = tuple(Stage1Section.model_fields)
"""Every key of the ``stage1`` section, in the order Stage 1 writes them (ARCHITECTURE.md §11's, then the run's
owner, the model's sha256, the last completed run and why a run stopped)."""

STAGE1_PATH_KEYS: tuple[str, ...] = (
    "model_checkpoint", "vecnormalize_path", "checkpoints_dir", "lora_adapter_path", "experience_path",
)
"""The ``stage1`` keys that hold workspace paths (migrated from absolute in schema 1)."""


class DatasetEntry(Section):
    """``stage2.dataset``: the last export (:func:`tradelab.grpo.dataset.export_dataset`); paths workspace-relative."""

    counts: dict[str, Any]
    paths: dict[str, str]
    sha256s: dict[str, str]
    source: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    generated_at: str | None = None
    profile: str | None = None
    constant_answers: dict[str, Any] | None = None
    """Per split, what a constant BUY, SELL or HOLD advisor scores on it
    (:class:`tradelab.grpo.baselines.ConstantAnswers`); None in exports made before the figure existed."""
    train_order: dict[str, Any] | None = None
    """How the train file's rows were ordered (:class:`tradelab.grpo.train_order.TrainOrder`); None in exports made
    before the order was recorded (they are in time order)."""


class RunDataset(Section):
    """The dataset a Stage 2 run trained on."""

    paths: dict[str, str]
    sha256s: dict[str, str]


class RunOutput(Section):
    """What a completed Stage 2 run left for the next Stage 1 and for evaluation to load (ARCHITECTURE.md §9).

    Attributes:
        kind: ``adapter`` (a PEFT LoRA folder, applied to ``base_model_path``) or ``full_model`` (a Hugging Face
            model folder, loaded as the advisor's base with no adapter).
        path: The folder (workspace-relative when inside the workspace).
        sha256: :func:`tradelab.fileio.sha256_dir` of the folder when it was recorded.
        base_model_path: For an adapter, the base model it was trained on; None for a full model.
        architectures: ``config.json``'s architectures, for a full model.
    """

    kind: OutputKind
    path: str
    sha256: str | None = None
    base_model_path: str | None = None
    architectures: list[str] | None = None


class GroupSignal(Section):
    """A local GRPO run's groups: how many carried a learning signal (:mod:`tradelab.grpo.local.groups`)."""

    steps: int
    groups_sampled: int
    groups_kept: int
    zero_variance_share: float | None = None
    zero_variance_share_first_step: float | None = None
    zero_variance_share_last_step: float | None = None
    reward_std_mean: float | None = None
    rounds_mean: float | None = None
    capped_steps: int = 0
    steps_without_signal: int = 0


class RunRecord(Section):
    """One ``stage2.runs`` entry: a launch attempt of any engine (verl, soft-grpo, local), and what a Stage 2 run
    returns (:meth:`tradelab.grpo.engines.interface.Engine.run`).

    Common fields first; the rest are engine-specific and absent from the others' records:

    - verl / soft-grpo (:mod:`tradelab.grpo.engines.launch`): ``python`` (launch interpreter), ``error`` (why an
      attempt was interrupted), ``output_note`` (why an exit-0 run left no usable weights).
    - local (:func:`tradelab.grpo.local.train.train_local`): ``mode`` (soft / discrete), ``resumed_from``,
      ``steps_done``, ``skipped_steps`` (non-finite steps), ``adapter_round_trip``, the validation reward and
      format rate at the start and the end of the run, ``group_signal`` (the share of groups whose rewards had
      zero variance, the mean within-group reward std, dynamic-sampling rounds), ``published_step`` and
      ``val_reward_published`` (the step whose adapter the run handed on, ``run.hand_on``, and its validation
      reward), ``val_balanced_start`` / ``_published`` / ``_end`` (the same validations' sides-balanced reward) and
      ``hand_on_reward`` (which of the two ranked the steps); ``checkpoint``: the last checkpoint an interrupted run
      left, which a re-run can continue.

    ``pid``, ``host`` and ``lock_token`` name the process that wrote the record under the market lock; a ``running``
    record whose process is gone is marked ``interrupted`` (:mod:`tradelab.attempts`).

    A ``completed`` run always has ``output``. Builders dump it with :meth:`record`, so each engine's record keeps
    exactly the keys it sets.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=False, validate_assignment=True)

    engine: str
    status: Status
    command: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    log_file: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    return_code: int | None = None
    profile: str | None = None
    dataset: RunDataset | None = None
    config_hash: str | None = None
    output_dir: str | None = None
    tensorboard_dir: str | None = None
    output: RunOutput | None = None
    python: str | None = None
    error: str | None = None
    output_note: str | None = None
    mode: str | None = None
    resumed_from: str | None = None
    steps_done: int | None = None
    skipped_steps: int | None = None
    adapter_round_trip: dict[str, Any] | None = None
    val_reward_start: float | None = None
    val_reward_end: float | None = None
    val_format_start: float | None = None
    val_format_end: float | None = None
    group_signal: GroupSignal | None = None
    published_step: int | None = None
    val_reward_published: float | None = None
    val_balanced_start: float | None = None
    val_balanced_published: float | None = None
    val_balanced_end: float | None = None
    hand_on_reward: str | None = None
    pid: int | None = None
    host: str | None = None
    lock_token: str | None = None
    checkpoint: str | None = None


class Stage2Section(Section):
    """``stage2``: the last dataset export and preflight report, and every launch attempt (appended)."""

    dataset: DatasetEntry | None = None
    preflight: dict[str, Any] | None = None
    runs: list[RunRecord] = Field(default_factory=list)

    def last_output(self) -> RunOutput | None:
        """The output of the most recent completed run, or None when no run completed."""
        for run in reversed(self.runs):
            if run.status == "completed" and run.output is not None:
                return run.output
        return None


class EvaluationSummary(Section):
    """One ``evaluation`` entry, and what an evaluation returns (:func:`tradelab.evaluation.run.evaluation_summary`).

    Figures per agent under ``agents`` (name -> headline metrics); ``table`` holds the compact display rows.
    """

    created_at: str | None = None
    report_dir: str | None = None
    adapter: Any = None
    episodes: int | None = None
    seeds: int | None = None
    walk_forward: Any = None
    profile: str | None = None
    config_hash: str | None = None
    holdout: dict[str, Any] | None = None
    agents: dict[str, Any] | None = None
    n_trials: int | None = None
    hybrid_minus_ppo: dict[str, Any] | None = None
    table: list[dict[str, Any]] | None = None
