"""Counting the experience JSONL without re-reading it: a byte-offset index beside the file.

Every Stage 1 start and end records ``experience_samples`` / ``experience_with_outcome`` (the whole file, every run)
in the manifest. The file is append-only and reaches millions of records, so a count that re-parsed it would make
each ``--resume`` (and each ``loop`` iteration) slower as the buffer grows. Instead the totals up to the end of the
last complete line are kept in ``.<file>.count.json`` beside it, and a count reads only the bytes appended since.

The index is trusted only while the file still holds the bytes it was made from: its size is at least the indexed
offset and the first and last :data:`CHECK_BYTES` bytes of the indexed part hash the same. A file replaced or
rewritten by hand fails that check and is counted from the start (and re-indexed). The index is a cache: when it
cannot be written the count is still returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradelab.errors import WorkspaceError
from tradelab.fileio import atomic_write_json

log = logging.getLogger(__name__)

INDEX_VERSION = 1
CHECK_BYTES = 4096
"""Bytes hashed at each end of the indexed part to recognise the same file."""
READ_BYTES = 1 << 23


@dataclass(frozen=True)
class ExperienceCount:
    """Totals of an experience file and what the count cost.

    Attributes:
        records: Lines that parse to a JSON object.
        with_outcome: Of those, records whose ``outcome`` is not null.
        malformed: Non-blank lines that do not parse to an object (a partial last line included).
        lines: Lines read in all (blank ones included), so a malformed line's number is known.
        bytes_read: Bytes this count read from the file (the tail after the index, or the whole file).
        from_byte: Where this count started reading (0 without a usable index).
    """

    records: int
    with_outcome: int
    malformed: int
    lines: int
    bytes_read: int
    from_byte: int


def index_path(path: Path) -> Path:
    """The index file of experience file ``path``."""
    return path.with_name(f".{path.name}.count.json")


def _ends_digest(fh: Any, offset: int) -> tuple[str, str]:
    """SHA-256 of the first and of the last :data:`CHECK_BYTES` bytes before ``offset``."""
    fh.seek(0)
    head = hashlib.sha256(fh.read(min(CHECK_BYTES, offset))).hexdigest()
    start = max(0, offset - CHECK_BYTES)
    fh.seek(start)
    tail = hashlib.sha256(fh.read(offset - start)).hexdigest()
    return head, tail


def _load_index(path: Path, fh: Any, size: int) -> dict[str, int] | None:
    """The index's totals when it matches the file, else None."""
    try:
        index = json.loads(index_path(path).read_text(encoding="utf-8"))
        offset = int(index["bytes"])
        if index.get("version") != INDEX_VERSION or not 0 < offset <= size:
            return None
        if [index["head_sha256"], index["tail_sha256"]] != list(_ends_digest(fh, offset)):
            return None
        return {key: int(index[key]) for key in ("bytes", "records", "with_outcome", "malformed", "lines")}
    except (OSError, ValueError, KeyError, TypeError):  # no index yet, or one damaged: count from the start
        return None


def _classify(raw: bytes) -> tuple[bool, bool] | None:
    """``(is a record, has an outcome)`` for one non-blank line; None when it is malformed."""
    try:
        record = _parse(raw)
    except ValueError:  # bad JSON and bad UTF-8 alike
        return None
    if not isinstance(record, dict):
        return None
    return True, record.get("outcome") is not None


try:
    from orjson import loads as _orjson_loads

    def _parse(raw: bytes) -> Any:
        try:
            return _orjson_loads(raw)
        except ValueError:  # NaN and the like: only the standard parser reads them
            return json.loads(raw)
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    _parse = json.loads


def count_experience_file(path: Path, *, update_index: bool = True) -> ExperienceCount:
    """Count the records of experience file ``path``, reading only what the index has not seen.

    Args:
        path: The experience JSONL (need not exist: all zeros then).
        update_index: Write the index for the next count (off for a read-only look).

    Returns:
        The totals of the whole file, with the bytes this call read.
    """
    path = Path(path)
    if not path.is_file():
        return ExperienceCount(0, 0, 0, 0, 0, 0)
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        index = _load_index(path, fh, size)
        totals = index or {"bytes": 0, "records": 0, "with_outcome": 0, "malformed": 0, "lines": 0}
        start = totals["bytes"]
        fh.seek(start)
        counted = dict(totals)  # totals up to the end of the last complete line
        bad: list[int] = []
        carry = b""
        read = 0
        while block := fh.read(READ_BYTES):
            read += len(block)
            data = carry + block
            lines = data.split(b"\n")
            carry = lines.pop()
            for raw in lines:
                counted["lines"] += 1
                _tally(counted, raw, bad)
            counted["bytes"] += len(data) - len(carry)
        final = dict(counted)
        if carry:  # a partial last line (a writer killed mid-line): counted now, read again once it is completed
            final["lines"] += 1
            _tally(final, carry, bad)
        if update_index and counted["bytes"] > start:
            head, tail = _ends_digest(fh, counted["bytes"])
            _save_index(path, {"version": INDEX_VERSION, **counted, "head_sha256": head, "tail_sha256": tail})
    if bad:
        log.warning("%s: %d malformed lines skipped when counting (lines %s)", path, len(bad),
                    ", ".join(map(str, bad[:20])))
    return ExperienceCount(final["records"], final["with_outcome"], final["malformed"], final["lines"], read, start)


def _tally(totals: dict[str, int], raw: bytes, bad: list[int]) -> None:
    if not raw.strip():
        return
    kind = _classify(raw)
    if kind is None:
        totals["malformed"] += 1
        bad.append(totals["lines"])
        return
    totals["records"] += 1
    totals["with_outcome"] += int(kind[1])


def _save_index(path: Path, index: dict[str, Any]) -> None:
    try:
        atomic_write_json(index_path(path), index)
    except WorkspaceError as exc:  # only a cache: the next count reads more, nothing is wrong
        log.warning("%s: experience count index not written (%s)", path, exc)

