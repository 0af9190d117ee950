"""One pass over the Stage 1 experience file for the export: read in blocks and hashed, each line validated,
counted and filtered, the kept rows handed to the spill (:mod:`tradelab.grpo.export_spill`)."""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.records import check_record
from tradelab.core.tradesim import is_entry_decision

if TYPE_CHECKING:
    from tradelab.grpo.export_spill import Spill

PROGRESS_EVERY_LINES = 1000
"""How often the export reports progress while streaming the experience file."""


@dataclass
class Candidate:
    """A kept experience, reduced to what a row needs (so memory does not hold whole records)."""

    sort_key: tuple[float, str]
    experience_id: str
    timestamp: str
    prompt: list[dict[str, str]]
    ground_truth: str


_NO_FORWARD = Candidate((0.0, ""), "", "", [], "")
"""Marker for a resolved experience whose forward window is empty."""
_REPARSE = Candidate((0.0, ""), "", "", [], "")
"""Marker for a record read by orjson whose output needs the standard parser and writer (see :func:`_loads`)."""


@dataclass
class Scan:
    """Counters gathered while streaming the experience file."""

    lines: int = 0
    blank: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    without_outcome: int = 0
    empty_forward: int = 0
    with_outcome: int = 0
    removed_decisions: int = 0
    removed_min_reward: int = 0
    removed_failures: int = 0
    successes: int = 0
    passed_filters: int = 0
    set_aside: int = 0
    source_sha256: str = ""


def _prompt(record: dict[str, Any]) -> list[dict[str, str]]:
    messages = record.get("prompt")
    if not isinstance(messages, list) or not messages:
        raise ValueError("prompt must be a non-empty list of messages")
    kept = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user"):
            raise ValueError(f"prompt[{i}] must be a system or user message")
        if not isinstance(message.get("content"), str) or not message["content"]:
            raise ValueError(f"prompt[{i}].content must be a non-empty string")
        kept.append({"role": message["role"], "content": message["content"]})
    if kept[-1]["role"] != "user":
        raise ValueError("the last prompt message must be the user's")
    return kept


def _sort_key(record: dict[str, Any]) -> tuple[float, str]:
    """``(seconds, id)`` of a record :func:`tradelab.core.records.check_record` passed (a string timestamp)."""
    moment = datetime.fromisoformat(record["timestamp"])
    seconds = moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=None).timestamp()
    return seconds, record["id"]


def _candidate(record: Any, blocklist: Sequence[str] = (), fast: bool = False,
               weights: Mapping[str, float] | None = None) -> Candidate | None:
    """A candidate row from a parsed line; None when the experience has no outcome yet, :data:`_NO_FORWARD` when
    its forward window is empty (a decision at the very end of the data cannot be scored). ``fast``: the record
    came through orjson; :data:`_REPARSE` when its ground truth must be written by the standard path instead
    (see :func:`_ground_truth_text`).

    Raises:
        ValueError: The record is malformed (the message says which field).
    """
    check_record(record)
    if not record["id"]:
        raise ValueError("id must be a non-empty string")
    if record.get("outcome") is None:
        return None
    if isinstance(record.get("forward"), dict) and record["forward"].get("open") == []:
        return _NO_FORWARD
    text = _ground_truth_text(build_ground_truth(record, blocklist=blocklist, weights=weights, checked=True), fast)
    if text is None:
        return _REPARSE
    return Candidate(_sort_key(record), record["id"], record["timestamp"], _prompt(record), text)


def _passes(record: dict[str, Any], scan: Scan, settings: Any) -> bool:
    """Apply decisions, min_reward and include_failures/min_success_pnl, counting what each removes."""
    if settings.decisions == "entries" and not is_entry_decision(record):
        scan.removed_decisions += 1
        return False
    outcome = record["outcome"]
    reward = outcome.get("reward")
    if settings.min_reward is not None and (not isinstance(reward, (int, float)) or reward < settings.min_reward):
        scan.removed_min_reward += 1
        return False
    pnl = outcome.get("pnl")
    success = isinstance(pnl, (int, float)) and math.isfinite(pnl) and pnl >= settings.min_success_pnl
    scan.successes += int(success)
    if not success and not settings.include_failures:
        scan.removed_failures += 1
        return False
    return True


READ_BYTES = 1 << 23
"""The experience file is read and hashed in blocks of this many bytes, then split into lines."""
RUN_ROWS = 32768
"""Kept candidates held in memory before they are sorted and spilled to a temporary Arrow file; with
:data:`BATCH_ROWS` and :data:`CHUNK_ROWS` this bounds the export's memory whatever the file's size."""


_DIFFERS_FROM_JSON_DUMPS: tuple[bytes, ...] = (b"e+", b"e-", b"0.0000", b"\x7f")
"""Where orjson's text can differ from :func:`json.dumps`' for the same objects: a float with an exponent, one in
[1e-5, 1e-4) (orjson writes ``0.0000x``, Python an exponent) and DEL (Python escapes it); non-ASCII is checked
apart. A string that merely contains one of these only costs the slower path."""


def _loads(raw: bytes) -> tuple[Any, bool]:
    """One JSONL line parsed, and whether orjson parsed it (several times faster than :func:`json.loads`).

    A line orjson rejects (``NaN``, ``Infinity``, a lone surrogate) goes to :func:`json.loads`, so it reads as
    before. orjson reads an integer past 64 bits as a float; :func:`_ground_truth_text` sends such a record back
    to the standard parser (its float has an exponent), and so does a record that fails validation.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(raw), True
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            pass
    return json.loads(raw), False


def _ground_truth_text(ground_truth: dict[str, Any], fast: bool) -> str | None:
    """:func:`tradelab.core.ground_truth.dumps` of ``ground_truth``, byte for byte; None when ``fast`` and orjson's
    text may differ (then the record is parsed again by the standard parser and rebuilt).

    With ``fast`` (its record came through orjson, so it holds no NaN or infinity, which orjson would write as
    null) orjson writes it, and its text is kept when it is ASCII and holds none of
    :data:`_DIFFERS_FROM_JSON_DUMPS`, the only places where the two writers differ.
    """
    if not fast:
        return dumps(ground_truth)
    try:
        text = _orjson.dumps(ground_truth, option=_orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a non-str key, an integer past 64 bits
        return None
    if not text.isascii() or any(marker in text for marker in _DIFFERS_FROM_JSON_DUMPS):
        return None
    return text.decode("ascii")


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt; without it every line takes the json path
    _orjson = None


def _lines(fh: Any, digest: Any) -> Iterator[bytes]:
    """Every line of ``fh`` as ``for line in fh`` yields it (split at ``\\n``, a last line without one included),
    read in :data:`READ_BYTES` blocks that also feed ``digest``."""
    carry = b""
    while block := fh.read(READ_BYTES):
        digest.update(block)
        parts = (carry + block).split(b"\n")
        carry = parts.pop()
        for part in parts:
            yield part + b"\n"
    if carry:
        yield carry


def stream_experience(
    path: Path, settings: Any, keep: int | None, spill: Spill, progress: Callable[[int, int], None] | None = None,
    skip: Callable[[int], bool] | None = None,
) -> Scan:
    """Read the JSONL once: count, validate, filter; hand the kept candidates to ``spill`` (the latest ``keep`` of
    them, all when None).

    ``progress`` gets ``(bytes read, file size)`` every :data:`PROGRESS_EVERY_LINES` lines and at the end. Lines
    whose starting byte ``skip`` returns True for are set aside (:mod:`tradelab.setaside`): counted, nothing more.
    """
    scan = Scan()
    weights = settings.reward_weights.model_dump()
    digest = hashlib.sha256()
    heap: list[tuple[tuple[float, str], int, Candidate]] = []
    run: list[tuple[tuple[float, str], int, Candidate]] = []
    total_bytes = path.stat().st_size
    done_bytes = 0
    number = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(_lines(fh, digest), start=1):
            offset = done_bytes
            done_bytes += len(raw)
            if progress and number % PROGRESS_EVERY_LINES == 0:
                progress(done_bytes, total_bytes)
            if skip is not None and skip(offset):
                scan.set_aside += 1
                continue
            if not raw.strip():
                scan.blank += 1
                continue
            try:
                record, fast = _loads(raw)
                try:
                    candidate = _candidate(record, settings.blocklist, fast, weights)
                except (ValueError, TypeError, KeyError):
                    if not fast:
                        raise
                    candidate = _REPARSE
                if candidate is _REPARSE:
                    record = json.loads(raw)
                    candidate = _candidate(record, settings.blocklist, weights=weights)
            except (ValueError, TypeError, KeyError) as exc:
                scan.malformed.append((number, str(exc)[:200]))
                continue
            if candidate is None:
                scan.without_outcome += 1
                continue
            if candidate is _NO_FORWARD:
                scan.empty_forward += 1
                continue
            scan.with_outcome += 1
            if not _passes(record, scan, settings):
                continue
            scan.passed_filters += 1
            item = (candidate.sort_key, number, candidate)
            if keep is None:
                run.append(item)
                if len(run) >= RUN_ROWS:
                    spill.add_run(run)
                    run = []
            elif len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    scan.lines = number
    scan.source_sha256 = digest.hexdigest()
    spill.add_run(run if keep is None else heap)
    return scan
