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

The sections are declared in :mod:`tradelab.manifest_sections` (data, Stage 1, Stage 2, evaluation) and
:mod:`tradelab.manifest_loop` (the loop); this module assembles them and is where every reader imports them from.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tradelab.manifest_loop import (
    LoopEvaluation,
    LoopInterruption,
    LoopIteration,
    LoopSection,
    LoopSettings,
    LoopStage1,
    LoopStage2Run,
)
from tradelab.manifest_sections import (
    BaseModelInfo,
    DataSection,
    DatasetEntry,
    EvaluationSummary,
    GroupSignal,
    MutableSection,
    OutputKind,
    RunDataset,
    RunOutput,
    RunRecord,
    Section,
    STAGE1_KEYS,
    STAGE1_PATH_KEYS,
    Stage1Section,
    Stage2Section,
    Status,
    STATUSES,
)

__all__ = [
    "BaseModelInfo",
    "data_of",
    "DataSection",
    "DatasetEntry",
    "evaluations_of",
    "EvaluationSummary",
    "GroupSignal",
    "loop_of",
    "LoopEvaluation",
    "LoopInterruption",
    "LoopIteration",
    "LoopSection",
    "LoopSettings",
    "LoopStage1",
    "LoopStage2Run",
    "ManifestModel",
    "MutableSection",
    "OutputKind",
    "problems_of",
    "RunDataset",
    "RunOutput",
    "RunRecord",
    "Section",
    "STAGE1_KEYS",
    "STAGE1_PATH_KEYS",
    "stage1_of",
    "Stage1Section",
    "stage2_of",
    "Stage2Section",
    "Status",
    "STATUSES",
    "undeclared_keys",
]


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
