"""The manifest's shape, declared once (ARCHITECTURE.md §11): every section as a pydantic model.

:mod:`tradelab.manifest` validates each file it reads against :class:`ManifestModel` and gives readers typed
sections (:func:`stage1_of`, :func:`stage2_of`, :func:`data_of`, :func:`evaluations_of`, :func:`loop_of`). The
stages return these same types (:class:`RunRecord` for a Stage 2 run, :class:`EvaluationSummary` for an evaluation,
:class:`LoopIteration` for one turn of the loop), and writers hand them to the manifest's writing functions.

Reading is *tolerant*: a key this version does not declare (written by an older version) is kept as it is, so a
manifest loses nothing. Writing is *strict*: a change that adds a key no model declares is refused
(:func:`undeclared_keys`), so a writer cannot slip a field past the schema. Declared keys are type-checked strictly
(``"512"`` is not an integer, ``true`` is not a number); most may be absent or null, as older files omit what they did
not yet record.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
      zero variance, the mean within-group reward std, dynamic-sampling rounds); ``checkpoint``: the last checkpoint
      an interrupted run left, which a re-run can continue.

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
    to the experience file (a redone Stage 1 sets that attempt's records aside first).
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


class ManifestModel(Section):
    """A whole manifest: the four sections of ARCHITECTURE.md §11, and the loop's once it has run."""

    schema_version: int = Field(ge=1)
    market: str
    created_at: str | None = None
    updated_at: str | None = None
    data: DataSection | None
    stage1: Stage1Section | None
    stage2: Stage2Section
    evaluation: list[EvaluationSummary]
    loop: LoopSection | None = None


def problems_of(manifest: dict[str, Any]) -> list[str]:
    """One line per field that does not fit :class:`ManifestModel` (``stage1.status is 'x': ...``)."""
    try:
        ManifestModel.model_validate(manifest)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])} is {err['input']!r:.80}: {err['msg']}"
                for err in exc.errors(include_url=False)]
    return []


def undeclared_keys(manifest: dict[str, Any]) -> set[str]:
    """The dotted paths of every key in ``manifest`` that no model declares (``stage1.foo``, ``stage2.runs.0.x``).

    Free-form figure payloads (fields typed ``dict[str, Any]``) are data, not manifest keys, and are not looked into.
    """
    found: set[str] = set()

    def walk(model: BaseModel, where: str) -> None:
        for key in model.model_extra or {}:
            found.add(f"{where}{key}")
        for name in type(model).model_fields:
            value = getattr(model, name)
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                if isinstance(item, BaseModel):
                    walk(item, f"{where}{name}.{index}." if isinstance(value, list) else f"{where}{name}.")

    walk(ManifestModel.model_validate(manifest), "")
    return found


def _section(manifest: dict[str, Any] | None, key: str) -> Any:
    return None if manifest is None else manifest.get(key)


def stage1_of(manifest: dict[str, Any] | None) -> Stage1Section | None:
    """The typed ``stage1`` section, or None when there is no manifest or no Stage 1 yet."""
    section = _section(manifest, "stage1")
    return None if section is None else Stage1Section.model_validate(section)


def stage2_of(manifest: dict[str, Any] | None) -> Stage2Section:
    """The typed ``stage2`` section (empty when there is no manifest)."""
    section = _section(manifest, "stage2")
    return Stage2Section() if section is None else Stage2Section.model_validate(section)


def data_of(manifest: dict[str, Any] | None) -> DataSection | None:
    """The typed ``data`` section, or None before the bars were recorded."""
    section = _section(manifest, "data")
    return None if section is None else DataSection.model_validate(section)


def evaluations_of(manifest: dict[str, Any] | None) -> list[EvaluationSummary]:
    """The typed evaluation summaries, oldest first."""
    return [EvaluationSummary.model_validate(e) for e in _section(manifest, "evaluation") or []]


def loop_of(manifest: dict[str, Any] | None) -> LoopSection | None:
    """The typed ``loop`` section, or None before a loop ran."""
    section = _section(manifest, "loop")
    return None if section is None else LoopSection.model_validate(section)
