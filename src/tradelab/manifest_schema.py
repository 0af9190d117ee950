"""The manifest's shape, declared once (ARCHITECTURE.md §11): every section as a pydantic model.

:mod:`tradelab.manifest` validates each file it reads against :class:`ManifestModel` and gives readers typed
sections (:func:`stage1_of`, :func:`stage2_of`, :func:`data_of`, :func:`evaluations_of`, :func:`loop_of`) instead
of ``(m or {}).get(..) or {}`` chains. Writers still hand it plain dicts (``update_manifest``), so the JSON on disk
keeps its key names and order; :class:`RunRecord` is the one exception built here, because two engines write runs.

The models are *tolerant* (``extra="allow"``), unlike the strict config models (:class:`tradelab.config.base
.StrictModel`): a manifest is a record written by many versions and several stages, so a key this version does not
declare (an older field, the loop's own figures) is kept as it is, not refused. Declared keys are type-checked
strictly (``"512"`` is not an integer, ``true`` is not a number); each may be absent or null, as older files
omit what they did not yet record.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

STAGE1_STATUSES: tuple[str, ...] = ("running", "completed", "interrupted", "failed")
RUN_STATUSES: tuple[str, ...] = ("running", "completed", "interrupted", "failed")


class Section(BaseModel):
    """Base of every manifest model: unknown keys are kept, declared ones are type-checked strictly."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


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

    ``pid``/``host`` own a ``running`` run (one whose process is gone is stale); ``last_completed`` keeps the
    previous completed section while a newer run is not completed, since its ``final.zip`` is still on disk.
    """

    status: Literal["running", "completed", "interrupted", "failed"] | None = None
    started_at: str | None = None
    completed_at: str | None = None
    test_mode: bool | None = None
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


STAGE1_KEYS: tuple[str, ...] = tuple(Stage1Section.model_fields)
"""Every key of the ``stage1`` section, in the order Stage 1 writes them (ARCHITECTURE.md §11's, then the run's
owner, the model's sha256 and the last completed run)."""

STAGE1_PATH_KEYS: tuple[str, ...] = (
    "model_checkpoint", "vecnormalize_path", "checkpoints_dir", "lora_adapter_path", "experience_path",
)
"""The ``stage1`` keys that hold workspace paths (migrated from absolute in schema 1)."""


class DatasetEntry(Section):
    """``stage2.dataset``: the last export (:func:`tradelab.grpo.dataset.export_dataset`)."""

    counts: dict[str, Any]
    paths: dict[str, str]
    sha256s: dict[str, str]
    source: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    generated_at: str | None = None
    test_mode: bool | None = None


class RunDataset(Section):
    """The dataset a Stage 2 run trained on."""

    paths: dict[str, str]
    sha256s: dict[str, str]


class RunRecord(Section):
    """One ``stage2.runs`` entry: a launch attempt of any engine (verl, soft-grpo, local).

    Common fields first; the rest are engine-specific and absent from the others' records:

    - verl / soft-grpo (:func:`tradelab.grpo.runner.run`): ``python`` (launch interpreter), ``error`` (why an
      attempt was interrupted), ``output_note`` (why an exit-0 run left no usable weights), ``output`` (the
      exported weights described), and ``hf_model_path`` instead of ``adapter_path`` for soft-grpo.
    - local (:func:`tradelab.grpo.local.train.train_local`): ``mode`` (soft / discrete), ``resumed_from``,
      ``steps_done``, ``skipped_steps`` (non-finite steps) and ``adapter_round_trip``.

    Every engine's builder sets every common field (``engine`` .. ``adapter_path``); they are optional here only so
    that records written by older versions still read. Builders dump it with :meth:`record`, so each engine's record
    keeps exactly the keys it sets.
    """

    engine: str
    status: Literal["running", "completed", "interrupted", "failed"]
    command: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    log_file: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    return_code: int | None = None
    test_mode: bool | None = None
    dataset: RunDataset | None = None
    config_hash: str | None = None
    output_dir: str | None = None
    tensorboard_dir: str | None = None
    adapter_path: str | None = None
    python: str | None = None
    error: str | None = None
    output_note: str | None = None
    output: dict[str, Any] | None = None
    hf_model_path: str | None = None
    mode: str | None = None
    resumed_from: str | None = None
    steps_done: int | None = None
    skipped_steps: int | None = None
    adapter_round_trip: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The JSON object kept in the manifest: the keys that were set, in declaration order."""
        return self.model_dump(exclude_unset=True)


class Stage2Section(Section):
    """``stage2``: the last dataset export and preflight report, and every launch attempt (appended)."""

    dataset: DatasetEntry | None = None
    preflight: dict[str, Any] | None = None
    runs: list[RunRecord] = Field(default_factory=list)


class EvaluationSummary(Section):
    """One ``evaluation`` entry (:func:`tradelab.evaluation.run.summarize`); figures per agent under ``agents``."""

    created_at: str | None = None
    report_dir: str | None = None
    adapter: Any = None
    test_mode: bool | None = None
    config_hash: str | None = None
    agents: dict[str, Any] | None = None


class LoopSection(Section):
    """``loop``: the Stage 1 -> Stage 2 -> evaluation loop's state (:mod:`tradelab.loop.run`), one entry per
    iteration; the loop resumes from it."""

    status: str | None = None
    settings: dict[str, Any] | None = None
    iterations: list[dict[str, Any]] = Field(default_factory=list)


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


def _section(manifest: dict[str, Any] | None, key: str) -> Any:
    return None if manifest is None else manifest.get(key)


def stage1_of(manifest: dict[str, Any] | None) -> Stage1Section:
    """The typed ``stage1`` section (all fields None when there is no manifest or no Stage 1 yet)."""
    return Stage1Section.model_validate(_section(manifest, "stage1") or {})


def stage2_of(manifest: dict[str, Any] | None) -> Stage2Section:
    """The typed ``stage2`` section (empty when there is no manifest)."""
    return Stage2Section.model_validate(_section(manifest, "stage2") or {})


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
