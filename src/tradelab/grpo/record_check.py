"""The experience record's declared types (ARCHITECTURE.md §6), checked once per record before anything reads it.

Stage 2 reads records written by Stage 1, by earlier versions, or edited by hand. A record whose field has the wrong
type (``action_taken: "BUY"``, ``contract: [1, 2]``) is reported by :func:`check_record` as one ``ValueError``
naming the field, so the export skips and counts it like a malformed line instead of failing deep inside the
ground-truth builder. Pure Python: nothing heavy is imported.
"""

from __future__ import annotations

from typing import Any

_NUMBER = (int, float)

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


def check_record(record: Any) -> None:
    """Raise ``ValueError`` naming the first field whose type differs from the declared one.

    Args:
        record: One parsed JSONL line.
    """
    if not isinstance(record, dict):
        raise ValueError(f"line is a JSON {_type_name(record)}, not an object")
    for key, types in REQUIRED.items():
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
