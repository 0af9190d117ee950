"""The experience record and the ground truth, declared once (ARCHITECTURE.md §6, §8), with the one validator.

Stage 1 writes experience records; Stage 2's export turns each into a ground truth that the reward reads under the
engines' own interpreter. Both shapes are declared here as TypedDicts, the type tables the validator checks are
derived from the same declaration, and the reward's weights and blocklist travel inside the ground truth as a
versioned :class:`RewardSpec` (so the figures a dataset was scored with are recorded with the data, not in module
constants). Standard library only: the numpy-only core imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

_NUMBER = (int, float)


class Advice(TypedDict, total=False):
    """``advice``: the parsed answer (:class:`tradelab.core.parse.Advice` as a dict)."""

    action: str | None
    action_id: int | None
    confidence: float | None
    reason: str
    parse_ok: bool
    error: str | None


class ActionTaken(TypedDict):
    """``action_taken``: what the fused policy did."""

    action: str
    action_id: int


class Position(TypedDict, total=False):
    """``position`` at the decision bar."""

    side: str
    entry_price: float | None
    stop: float | None
    target: float | None
    trail_on: bool
    unrealized_pnl: float
    bars_in_trade: int


class Forward(TypedDict, total=False):
    """``forward``: the next ``horizon_bars`` bars after the decision, for rewards only (never in a prompt)."""

    horizon_bars: int
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    atr: float
    atr_path: list[float]


class Outcome(TypedDict, total=False):
    """``outcome``: the realised result of the action taken, attached when it resolved."""

    pnl: float
    r_multiple: float
    exit_reason: str
    bars_held: int
    reward: float


class AdapterRef(TypedDict):
    """``adapter``: which adapter produced the response."""

    path: str
    sha256: str | None


class ExperienceRecord(TypedDict, total=False):
    """One line of ``stage1_experience.jsonl`` (ARCHITECTURE.md §6). :data:`REQUIRED` keys are always present."""

    id: str
    timestamp: str
    prompt: list[dict[str, str]]
    allowed_actions: list[str]
    forward: Forward
    contract: dict[str, float]
    rules: dict[str, Any]
    schema_version: int
    market: str
    run_id: str
    bar_index: int
    response: str
    advice: Advice
    position: Position
    account: dict[str, Any]
    market_context: dict[str, Any]
    action_taken: ActionTaken | None
    outcome: Outcome | None
    adapter: AdapterRef | None


REQUIRED: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "timestamp": (str,),
    "prompt": (list,),
    "allowed_actions": (list,),
    "forward": (dict,),
    "contract": (dict,),
    "rules": (dict,),
}
"""Fields every record must have, with their types."""

SCORED: tuple[str, ...] = ("allowed_actions", "forward", "contract", "rules")
"""The required fields a ground truth is built from; a record still being written (Stage 1's hindsight scoring, the
loop's probe) has these before it has an id or a prompt."""

OPTIONAL: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "market": (str,),
    "run_id": (str,),
    "bar_index": (int,),
    "response": (str,),
    "advice": (dict,),
    "position": (dict,),
    "account": (dict,),
    "market_context": (dict,),
}
"""Fields that may be absent; when present they have these types (not null)."""

NULLABLE: dict[str, tuple[type, ...]] = {
    "action_taken": (dict,),
    "outcome": (dict,),
    "adapter": (dict,),
}
"""Fields that may be absent or null; otherwise they have these types."""

NESTED: dict[tuple[str, str], tuple[type, ...]] = {
    ("advice", "action"): (str,),
    ("advice", "confidence"): _NUMBER,
    ("action_taken", "action"): (str,),
    ("position", "side"): (str,),
    ("market_context", "close"): _NUMBER,
    ("market_context", "atr"): _NUMBER,
    ("forward", "atr"): _NUMBER,
    ("outcome", "pnl"): _NUMBER,
    ("outcome", "reward"): _NUMBER,
}
"""Inner fields the reward and the filters read; each may be null, otherwise it has this type."""

def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true/false are not numbers here
    return isinstance(value, types)


def _expect(types: tuple[type, ...]) -> str:
    names = {"dict": "an object", "list": "a list", "str": "a string", "int": "an integer", "float": "a number"}
    return " or ".join(dict.fromkeys(names.get(t.__name__, t.__name__) for t in types))


def check_record(record: Any, required: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` naming the first field whose type differs from :class:`ExperienceRecord`'s.

    Args:
        record: One parsed JSONL line.
        required: The :data:`REQUIRED` fields that must be present (all when None); the others are type-checked
            when present.
    """
    if not isinstance(record, dict):
        raise ValueError(f"line is a JSON {_type_name(record)}, not an object")
    for key, types in REQUIRED.items():
        if required is not None and key not in required and record.get(key) is None:
            continue
        if key not in record or record[key] is None:
            raise ValueError(f"{key} is missing; it must be {_expect(types)}")
        if not _fits(record[key], types):
            raise ValueError(f"{key} is {_type_name(record[key])} {record[key]!r:.60}, expected {_expect(types)}")
    for table, nullable in ((OPTIONAL, False), (NULLABLE, True)):
        for key, types in table.items():
            if key not in record or (nullable and record[key] is None):
                continue
            if not _fits(record[key], types):
                raise ValueError(f"{key} is {_type_name(record[key])} {record[key]!r:.60}, expected "
                                 f"{_expect(types)}{' or null' if nullable else ''}")
    for (outer, inner), types in NESTED.items():
        container = record.get(outer)
        if isinstance(container, dict) and container.get(inner) is not None and not _fits(container[inner], types):
            value = container[inner]
            raise ValueError(f"{outer}.{inner} is {_type_name(value)} {value!r:.60}, expected {_expect(types)}")


class RewardWeights(TypedDict):
    """The reward's constants (:mod:`tradelab.core.reward` documents the formula they enter)."""

    format_bonus: float
    r_clip: float
    calibration_weight: float
    hold_miss_weight: float
    hold_avoid_weight: float
    neutral_confidence: float
    invalid_score: float


class RewardSpec(TypedDict):
    """The versioned reward parameters a ground truth carries: its weights and its answers' blocklist."""

    version: int
    weights: RewardWeights
    blocklist: list[str]


REWARD_SPEC_VERSION = 1
"""Version of :class:`RewardSpec`'s layout; bump when a weight changes meaning."""

DEFAULT_REWARD_WEIGHTS: RewardWeights = {
    "format_bonus": 0.1,
    "r_clip": 2.0,
    "calibration_weight": 0.1,
    "hold_miss_weight": 0.5,
    "hold_avoid_weight": 0.5,
    "neutral_confidence": 0.5,
    "invalid_score": -1.5,
}
"""The weights of a ground truth written before the spec travelled with it (and the config's defaults)."""


def reward_spec(weights: Mapping[str, float] | None = None, blocklist: Sequence[str] = ()) -> RewardSpec:
    """A complete :class:`RewardSpec`: ``weights`` over the defaults, empty blocklist items dropped.

    Raises:
        ValueError: ``weights`` names a key :class:`RewardWeights` does not declare, or a non-number.
    """
    given = dict(weights or {})
    unknown = sorted(set(given) - set(DEFAULT_REWARD_WEIGHTS))
    if unknown:
        raise ValueError(f"reward weights {unknown} are unknown; expected keys of {sorted(DEFAULT_REWARD_WEIGHTS)}")
    for key, value in given.items():
        if not _fits(value, _NUMBER):
            raise ValueError(f"reward weight {key} is {_type_name(value)} {value!r:.60}, expected a number")
    merged = {key: float(given.get(key, default)) for key, default in DEFAULT_REWARD_WEIGHTS.items()}
    return {"version": REWARD_SPEC_VERSION, "weights": merged,  # type: ignore[typeddict-item]
            "blocklist": [str(item) for item in blocklist if item]}


def spec_of(ground_truth: Mapping[str, Any]) -> RewardSpec:
    """The reward spec a ground truth carries; one without (``v`` <= 2) gets the defaults and its top-level
    ``blocklist``, so older datasets score exactly as they did.

    Raises:
        ValueError: The carried spec is from a newer tradelab, or malformed.
    """
    spec = ground_truth.get("reward_spec")
    if spec is None:
        return reward_spec(None, ground_truth.get("blocklist") or ())
    if not isinstance(spec, Mapping) or not isinstance(spec.get("weights"), Mapping):
        raise ValueError(f"ground_truth.reward_spec is {spec!r:.80}, expected an object with weights")
    version = spec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= REWARD_SPEC_VERSION:
        raise ValueError(f"ground_truth.reward_spec.version is {version!r}; this tradelab reads 1 to "
                         f"{REWARD_SPEC_VERSION} (re-export the dataset, or upgrade tradelab)")
    return reward_spec(spec["weights"], spec.get("blocklist") or ())


class GroundTruth(TypedDict):
    """The ``reward_model.ground_truth`` payload (ARCHITECTURE.md §8), written by
    :func:`tradelab.core.ground_truth.build_ground_truth` and read by the reward."""

    v: int
    market: str
    timestamp: str
    forward: dict[str, Any]
    decision_close: float
    position: dict[str, Any] | None
    allowed_actions: list[str]
    contract: dict[str, float]
    rules: dict[str, float]
    flatten_after_bars: int | None
    outcome: dict[str, Any] | None
    action_taken: str | None
    advice: dict[str, Any]
    reward_spec: RewardSpec
