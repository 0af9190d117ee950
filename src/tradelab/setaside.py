"""Experience records that do not count: byte ranges of ``stage1_experience.jsonl`` set aside in a ledger beside it.

The experience file is appended to and never truncated. A Stage 1 run that did not complete (killed, interrupted,
failed) and is then run again from the start writes its records a second time, so the first attempt's records are
set aside: they stay in the file, and their byte range goes into ``stage1_experience.setaside.json``, which every
reader honours (the Stage 2 export, Stage 1's refinement history, the manifest's counts). Only one writer appends
at a time (the market lock), so an attempt's records are exactly the bytes from where it began to the end of the
file when it is set aside; a line counts as set aside when it starts inside a range (a half-written last line
included).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tradelab.errors import DataError
from tradelab.fileio import atomic_write_json, iter_jsonl_between
from tradelab.provenance import utc_now

LEDGER_VERSION = 1
LEDGER_SUFFIX = ".setaside.json"


class SetAsideRange(BaseModel):
    """One range of the experience file that does not count.

    Attributes:
        start_byte: First byte of the range (where the attempt began appending).
        end_byte: One past its last byte (the file's size when it was set aside).
        records: Lines in it that parse to an object; ``with_outcome`` of those carry an outcome.
        run_ids: The ``run_id`` values found in it.
        reason: Why it was set aside.
        set_aside_at: When (UTC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_byte: int = Field(ge=0)
    end_byte: int = Field(ge=0)
    records: int = Field(ge=0)
    with_outcome: int = Field(ge=0)
    run_ids: list[str]
    reason: str
    set_aside_at: str


class Ledger(BaseModel):
    """``stage1_experience.setaside.json``: the set-aside ranges, in file order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = LEDGER_VERSION
    ranges: list[SetAsideRange] = Field(default_factory=list)

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, end)`` of every range, sorted."""
        return sorted((r.start_byte, r.end_byte) for r in self.ranges)

    def totals(self) -> tuple[int, int]:
        """``(records, with_outcome)`` set aside in all."""
        return sum(r.records for r in self.ranges), sum(r.with_outcome for r in self.ranges)


def ledger_path(experience: str | Path) -> Path:
    """The ledger of experience file ``experience`` (``<stem>.setaside.json`` beside it)."""
    path = Path(experience)
    return path.with_name(path.stem + LEDGER_SUFFIX)


def load_ledger(experience: str | Path) -> Ledger:
    """The ledger of ``experience`` (empty when there is none).

    Raises:
        DataError: The ledger exists but cannot be read; ignoring it would count set-aside records again.
    """
    path = ledger_path(experience)
    if not path.is_file():
        return Ledger()
    try:
        return Ledger.model_validate(json.loads(path.read_bytes()))
    except (OSError, ValueError, ValidationError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a readable set-aside ledger ({reason}); restore it from a backup, or delete "
                        f"it and the experience file {Path(experience).name} and run Stage 1 again") from None


def covered(ledger: Ledger) -> Callable[[int], bool]:
    """A test of a line's starting byte offset: True when the line lies in a set-aside range."""
    bounds = ledger.bounds()
    starts = [start for start, _ in bounds]

    def test(offset: int) -> bool:
        index = bisect.bisect_right(starts, offset) - 1
        return index >= 0 and offset < bounds[index][1]

    return test


def set_aside(experience: str | Path, start_byte: int, *, reason: str) -> list[SetAsideRange]:
    """Set aside the experience file's bytes from ``start_byte`` to its end (the parts not set aside already).

    Returns:
        The new ranges (none when everything there is set aside already).

    Raises:
        DataError: The ledger exists but cannot be read.
        WorkspaceError: The ledger cannot be written.
    """
    path = Path(experience)
    end = path.stat().st_size if path.is_file() else 0
    ledger = load_ledger(path)
    added = [_summarised(path, start, stop, reason) for start, stop in _uncovered(ledger, start_byte, end)]
    if added:
        atomic_write_json(ledger_path(path), Ledger(ranges=[*ledger.ranges, *added]).model_dump())
    return added


def _uncovered(ledger: Ledger, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` no range of ``ledger`` covers (ranges stay disjoint)."""
    pieces, cursor = [], start
    for low, high in ledger.bounds():
        if high <= cursor:
            continue
        if low >= end:
            break
        if low > cursor:
            pieces.append((cursor, low))
        cursor = max(cursor, high)
    if cursor < end:
        pieces.append((cursor, end))
    return pieces


def _summarised(path: Path, start: int, end: int, reason: str) -> SetAsideRange:
    records = with_outcome = 0
    run_ids: dict[str, None] = {}
    for line in iter_jsonl_between(path, start, end):
        if line.record is None:
            continue
        records += 1
        with_outcome += int(line.record.get("outcome") is not None)
        if isinstance(line.record.get("run_id"), str):
            run_ids[line.record["run_id"]] = None
    return SetAsideRange(start_byte=start, end_byte=end, records=records, with_outcome=with_outcome,
                         run_ids=list(run_ids), reason=reason, set_aside_at=utc_now())
