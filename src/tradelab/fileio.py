"""Small file helpers every stage uses: atomic writes, hashing, JSONL append.

Writes go to a temp file in the same directory and are moved into place with ``os.replace``, so a crash never leaves
a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradelab.errors import StageFailed, WorkspaceError
from tradelab.provenance import utc_stamp


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a :class:`WorkspaceError` that names it and the fix."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WorkspaceError(
            f"{path}: cannot write ({reason}); make sure its folder is writable and the disk has free space, "
            f"or pass another --root"
        ) from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``).

    Raises:
        WorkspaceError: The file cannot be written (permissions, disk full, a file where a folder should be).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # mkstemp creates 0600; keep an existing file's mode, else the usual 0644, so artifacts stay shareable.
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path next to ``path`` for a writer that needs a file name (``model.save(tmp)``); when the
    block succeeds the file replaces ``path``, otherwise it is removed."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    try:
        yield Path(tmp)
        with writing(path):
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; when the block succeeds it replaces ``target``.

    A folder artifact (model, adapter, checkpoint) therefore appears complete or not at all: the old folder is moved
    aside before the swap and deleted after it, and a failed block leaves ``target`` untouched.
    """
    target = Path(target)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are ordinary shared folders
        aside = None
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, aside / target.name)
        os.replace(staging, target)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def new_stamped_dir(parent: str | Path, *, prefix: str = "") -> Path:
    """Create and return ``parent/<prefix><UTC stamp>/`` for one run or report.

    The folder is claimed by ``mkdir`` itself, so two runs started in the same second (two processes included) never
    share one: the later gets ``-2``, ``-3``... appended.

    Raises:
        StageFailed: 999 folders of that second already exist.
    """
    parent, stamp = Path(parent), utc_stamp()
    for attempt in range(1, 1000):
        path = parent / (f"{prefix}{stamp}" if attempt == 1 else f"{prefix}{stamp}-{attempt}")
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise StageFailed(f"{parent}: could not create a new folder for {prefix}{stamp}")


def atomic_copy_dir(source: str | Path, target: str | Path) -> Path:
    """Replace ``target`` with a copy of the folder ``source`` through :func:`staged_dir` (complete or not at all)."""
    with staged_dir(target) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return Path(target)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to a JSONL file (never truncates) and fsync; return how many were written.

    A file whose last line is partial (a writer killed mid-line) first gets a newline, so the partial line stays one
    malformed line that readers skip and the first new record starts on a line of its own.
    """
    path = Path(path)
    lines = [json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records]
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not lines:
            return 0
        with open(path, "a+b") as fh:
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    lines[0] = "\n" + lines[0]
            fh.write("".join(lines).encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    return len(lines)


@dataclass
class JsonlLine:
    """One line of a JSONL file as a tolerant reader sees it.

    Attributes:
        number: 1-based line number.
        record: The parsed JSON object, or None when the line is malformed.
        error: Why the line is malformed (None when it parsed to an object).
    """

    number: int
    record: dict[str, Any] | None
    error: str | None
    offset: int | None = None
    """Byte offset of the line's start in the file, where the reader knows it."""


def iter_jsonl(path: str | Path) -> Iterator[JsonlLine]:
    """Every non-blank line of a JSONL file, parsed; malformed lines (bad JSON, bad UTF-8, not an object) are
    yielded with their error instead of raising, so one damaged line never blocks a reader."""
    with open(path, "rb") as fh:
        offset = 0
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                yield _parse_line(number, raw, offset)
            offset += len(raw)


def iter_jsonl_between(path: str | Path, start: int, end: int) -> Iterator[JsonlLine]:
    """The non-blank lines that start at a byte in ``[start, end)`` (``start`` must be a line start), parsed as
    :func:`iter_jsonl` does; a line that runs past ``end`` is read whole. Numbers count from the first."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset, number = start, 0
        while offset < end:
            raw = fh.readline()
            if not raw:
                break
            number += 1
            if raw.strip():
                yield _parse_line(number, raw, offset)
            offset += len(raw)


def tail_jsonl(path: str | Path, n_lines: int, *, block_bytes: int = 1 << 20,
               skip: Callable[[int], bool] | None = None) -> list[JsonlLine]:
    """The last ``n_lines`` non-blank lines of a JSONL file, parsed as :func:`iter_jsonl` does, oldest first.

    Reads backwards from the end in blocks, so the cost follows the lines wanted, not the file's size. Line numbers
    count from the first line returned (the file's total is unknown without reading it all); a trailing line that
    an interrupted append left without its newline is returned as it is (malformed if it is cut short).

    Args:
        skip: Leaves out the lines whose starting byte offset it returns True for (set-aside records,
            :mod:`tradelab.setaside`); the lines returned are the last ``n_lines`` of those it keeps.
    """
    if n_lines <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        position, data = fh.tell(), b""
        kept: list[tuple[int, bytes]] = []
        while position > 0 and len(kept) <= n_lines:
            step = min(block_bytes, position)
            position -= step
            fh.seek(position)
            data = fh.read(step) + data
            kept = _kept_lines(data, position, skip)
    return [_parse_line(number, raw, offset) for number, (offset, raw) in enumerate(kept[-n_lines:], start=1)]


def _kept_lines(data: bytes, position: int, skip: Callable[[int], bool] | None) -> list[tuple[int, bytes]]:
    """``(offset, line)`` of the non-blank whole lines in ``data`` (read from byte ``position``) that ``skip``
    keeps; the first piece is dropped unless ``data`` starts the file (it may be the end of a longer line)."""
    kept, offset = [], position
    for index, raw in enumerate(data.split(b"\n")):
        if raw.strip() and (index > 0 or position == 0) and (skip is None or not skip(offset)):
            kept.append((offset, raw))
        offset += len(raw) + 1
    return kept


def _parse_line(number: int, raw: bytes, offset: int | None = None) -> JsonlLine:
    try:
        record = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return JsonlLine(number, None, f"not valid JSON ({str(exc)[:120]})", offset)
    if not isinstance(record, dict):
        return JsonlLine(number, None, f"a JSON {type(record).__name__}, not an object", offset)
    return JsonlLine(number, record, None, offset)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_dir(path: str | Path) -> str:
    """Hex SHA-256 over a directory's files (relative names and contents, sorted), e.g. an adapter folder."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
