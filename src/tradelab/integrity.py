"""Hashes of the artifacts tradelab must decode with pickle (SB3 model zips): recorded when written, checked first.

Loading an SB3 zip runs ``cloudpickle`` on parts of it, and a pickle can run any code. So every such file tradelab
writes gets its sha256 recorded in ``sha256sums.json`` in the same folder, and :func:`verify_sha256` refuses a file
whose hash is not recorded or has changed, before anything decodes it. Statistics that once were pickled
(``vecnormalize.pkl``) are stored as ``.npz`` instead, which loads without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

from tradelab.errors import WorkspaceError
from tradelab.fileio import atomic_write_json, sha256_file

REGISTRY_NAME = "sha256sums.json"
"""Per-folder file of ``{file name: sha256}`` for the pickled artifacts in that folder."""


def _registry(folder: Path) -> dict[str, str]:
    path = folder / REGISTRY_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # an unreadable registry vouches for nothing: every file in the folder is then refused
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) \
        else {}


def record_sha256(path: str | Path, *, digest: str | None = None) -> str:
    """Record ``path``'s sha256 in its folder's registry; returns the hash.

    Args:
        digest: The hash to record, when the file is about to be replaced by one whose hash is known (a temporary
            file written in full); None hashes ``path`` as it is.
    """
    path = Path(path)
    digest = digest if digest is not None else sha256_file(path)
    registry = _registry(path.parent)
    registry[path.name] = digest
    atomic_write_json(path.parent / REGISTRY_NAME, dict(sorted(registry.items())))
    return digest


def recorded_sha256(path: str | Path) -> str | None:
    """The hash recorded for ``path`` when tradelab wrote it, or None."""
    path = Path(path)
    return _registry(path.parent).get(path.name)


def verify_sha256(path: str | Path, *, fix: str) -> str:
    """Check ``path`` against the hash recorded when it was written; returns the hash.

    Args:
        path: A pickled artifact about to be loaded.
        fix: What the user should do instead (e.g. re-run Stage 1), appended to the error.

    Raises:
        WorkspaceError: No hash is recorded for the file, or the file changed since it was written.
    """
    path = Path(path)
    expected = recorded_sha256(path)
    if expected is None:
        raise WorkspaceError(
            f"{path}: no sha256 was recorded for it in {path.parent / REGISTRY_NAME}, so tradelab will not load it "
            f"(loading runs pickle code); {fix}"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise WorkspaceError(
            f"{path}: changed since tradelab wrote it (sha256 {actual[:12]}..., recorded {expected[:12]}...), so it "
            f"is not loaded (loading runs pickle code); {fix}"
        )
    return actual
