"""A full or read-only disk, injected at the operating-system calls Python makes (tests/e2e/test_disk_faults.py).

Why not a real small file system: ``mount -t tmpfs`` works on the CI machine (root), but it needs privileges a test
suite should not need, and a full disk fails whichever write happens to come next, not the one a test is about.
Root also ignores permission bits, so ``chmod`` cannot make a folder read-only. Every tradelab writer creates its
file or its temporary file or folder through ``open`` / ``os.open`` / ``os.mkdir`` and moves it into place with
``os.replace`` (:mod:`tradelab.fileio`); the writers implemented in C (pyarrow, safetensors, torch) write into such a
temporary path that Python created first. Failing those calls for paths under the workspace therefore fails every
write where it starts, with the errno a real disk gives. ``partial`` makes the matched file's first ``write`` put
half its bytes on disk and then fail, as a disk that fills up during an append does.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fnmatch
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class DiskFault:
    """Which writes fail: from the first whose file name matches ``match`` (``fnmatch`` on the base name), under
    ``root`` (its ``logs/`` excepted).

    Attributes:
        persistent: Every later write under ``root`` fails too (a read-only file system); otherwise only that one
            (a full disk whose failed write gave its space back).
        fired: The paths whose writes failed, in order.
    """

    def __init__(self, root: Path, *, error: int, match: str, persistent: bool, partial: bool, after: int) -> None:
        self.root = str(Path(root).resolve())
        self.error, self.match, self.persistent, self.partial = error, match, persistent, partial
        self.fired: list[str] = []
        self.active = False
        self.after = after
        self.spared: set[str] = set()

    def _matches(self, text: str) -> bool:
        """Whether ``text`` is the write the fault starts at: the first matching path after ``after`` other matching
        paths (the calls writing one file count once)."""
        if self.fired or text in self.spared or not fnmatch.fnmatch(os.path.basename(text), self.match):
            return False
        if len(self.spared) < self.after:
            self.spared.add(text)
            return False
        return True

    def _applies(self, path: Any) -> str | None:
        if isinstance(path, int):
            return None
        text = os.path.abspath(os.fsdecode(path))
        inside = text.startswith(self.root + os.sep) and not text.startswith(os.path.join(self.root, "logs"))
        return text if inside else None

    def hit(self, path: Any) -> bool:
        """Whether a write to ``path`` fails now (and records it)."""
        text = self._applies(path)
        if text is None:
            return False
        if self.active or self._matches(text):
            self.active = self.persistent
            self.fired.append(text)
            return True
        return False

    def raise_for(self, path: Any) -> None:
        if self.hit(path):
            raise OSError(self.error, os.strerror(self.error), os.fsdecode(path))


class _HalfWritten:
    """A file object whose first ``write`` puts half its bytes on disk, then fails like a full disk."""

    def __init__(self, handle: Any, fault: DiskFault, path: str) -> None:
        self._handle, self._fault, self._path = handle, fault, path

    def write(self, data: Any) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(self._fault.error, os.strerror(self._fault.error), self._path)

    def __enter__(self) -> _HalfWritten:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@contextlib.contextmanager
def disk_fault(root: Path, *, error: int = errno.ENOSPC, match: str = "*", persistent: bool = False,
               partial: bool = False, after: int = 0) -> Iterator[DiskFault]:
    """Inject the fault for the block (starting at the matching write after the first ``after``); yields the
    :class:`DiskFault` to inspect."""
    fault = DiskFault(root, error=error, match=match, persistent=persistent, partial=partial, after=after)
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace, real_rename, real_link = os.replace, os.rename, os.link

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            if fault.partial and fault._applies(file) and fault._matches(os.fsdecode(file)):
                fault.fired.append(os.fsdecode(file))
                return _HalfWritten(real_open(file, mode, *args, **kwargs), fault, os.fsdecode(file))
            fault.raise_for(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS:
            fault.raise_for(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        fault.raise_for(path)
        real_mkdir(path, *args, **kwargs)

    def moving(real: Any) -> Any:
        def move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            fault.raise_for(dst)
            return real(src, dst, *args, **kwargs)

        return move

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", fake_open)
        patch.setattr(io, "open", fake_open)
        patch.setattr(os, "open", fake_os_open)
        patch.setattr(os, "mkdir", fake_mkdir)
        patch.setattr(os, "replace", moving(real_replace))
        patch.setattr(os, "rename", moving(real_rename))
        patch.setattr(os, "link", moving(real_link))
        yield fault
