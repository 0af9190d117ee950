"""Opening a user's bar file whatever its container: plain text, ``.gz``, a one-file ``.zip``, ``.zst``, parquet.

The container is told by the file's first bytes, not its name (a ``.txt`` can be a CSV, a ``.csv`` can be
gzip-compressed). The source is opened read-only; its content is read once into memory, decompressed with the same
bomb limits as Databento archives (:func:`tradelab.marketdata.databento.member_limit`).
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tradelab.errors import DataError
from tradelab.marketdata.databento import decompress_zst, member_limit, read_member, too_big_message

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"

SNIFF_LINES = 8
"""Lines of text the format detection looks at."""

_IGNORED_MEMBERS = ("__MACOSX/", ".DS_Store")


@dataclass(frozen=True)
class Source:
    """A bar file's content.

    Attributes:
        path: The file as given.
        label: ``path`` or ``path!member`` for messages.
        data: The (decompressed) bytes.
        container: ``plain``, ``gzip``, ``zip`` or ``zstd``.
    """

    path: Path
    label: str
    data: bytes
    container: str

    @property
    def is_parquet(self) -> bool:
        """Whether the content is a parquet file."""
        return self.data[:4] == PARQUET_MAGIC

    def head_lines(self, count: int = SNIFF_LINES) -> list[str]:
        """The first ``count`` non-empty lines, decoded leniently (for detection only)."""
        text = self.data[: 64 << 10].decode("utf-8-sig", errors="replace")
        lines = [line.strip() for line in text.splitlines()]
        return [line for line in lines if line][:count]

    def text_stream(self) -> io.BytesIO:
        """The content as a binary stream (pandas decodes it)."""
        return io.BytesIO(self.data)


def zip_members(path: Path) -> list[str]:
    """Member names of a zip archive (folders and macOS metadata left out).

    Raises:
        DataError: The file is not a readable zip archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc}); re-download or re-export it") from exc
    return [n for n in names if not n.endswith("/") and not any(bad in n for bad in _IGNORED_MEMBERS)]


def is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive."""
    with open(path, "rb") as fh:
        return fh.read(4) == ZIP_MAGIC


def open_source(path: Path) -> Source:
    """Read ``path`` into a :class:`Source`, decompressing gzip, zstd or a zip's single data member.

    Raises:
        DataError: The file is empty, a zip holds several data files, or decompression fails or exceeds the limit.
    """
    head = _head(path)
    if not head:
        raise DataError(f"{path}: the file is empty; export the bars again")
    if head.startswith(ZIP_MAGIC):
        return _zip_source(path)
    if path.name.lower().endswith(".zip"):
        raise DataError(f"{path}: not a readable zip archive (it does not start like one); re-download the export, "
                        f"or rename it to what it is")
    raw = path.read_bytes()
    if head.startswith(GZIP_MAGIC):
        return Source(path, str(path), _gunzip(raw, str(path)), "gzip")
    if head.startswith(ZSTD_MAGIC):
        return Source(path, str(path), decompress_zst(raw, str(path)), "zstd")
    return Source(path, str(path), raw, "plain")


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(8)


def _zip_source(path: Path) -> Source:
    members = zip_members(path)
    if len(members) != 1:
        raise DataError(
            f"{path}: the archive holds {len(members)} files ({members[:10]}) and no '*ohlcv-1m.csv' "
            f"(Databento) members; zip a single bar file, or unpack it and import the file itself"
        )
    name = members[0]
    label = f"{path}!{name}"
    data = read_member(path, name, "re-download it")
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, label)
    return Source(path, label, data, "zip")


def _gunzip(raw: bytes, label: str) -> bytes:
    limit = member_limit(len(raw))
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            data = fh.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{label}: not valid gzip data ({exc}); re-download the export") from exc
    if len(data) > limit:
        raise DataError(too_big_message(label, len(data), len(raw), limit))
    return data
