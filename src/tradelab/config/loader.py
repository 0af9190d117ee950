"""Strict YAML loading: every mistake names the file, key path, bad value and a fix.

``load_config()`` reads each file listed in :data:`tradelab.config.schema.SECTION_FILES` from the config directory
(default: the project's ``config/``), lays the named run profile over them (:mod:`tradelab.config.profile`; default
:data:`~tradelab.config.profile.DEFAULT_PROFILE`), applies dotted overrides, validates into frozen pydantic models and
returns a :class:`TradelabConfig` that carries its profile's name. This is the only place a profile is applied:
every stage reads plain fields. :func:`config_hash` gives a stable hash of the resolved values (the ones that ran)
for manifests and reports.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tradelab.config.profile import DEFAULT_PROFILE, Profile, deep_merge, read_profile
from tradelab.config.profile import available_profiles as _available
from tradelab.config.schema import SECTION_FILES, TradelabConfig
from tradelab.errors import ConfigError

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
"""The project's own ``config/`` directory (src/tradelab/config -> repo root)."""
DEFAULT_MODEL_ENV = "TRADELAB_DEFAULT_MODEL"
"""Environment variable that, when set, replaces ``llm.default_model`` after the profile is laid on."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, which YAML 1.1 leaves as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML mapping, raising :class:`ConfigError` with the file name on any problem."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; restore it from the repository's config/ folder") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc}); check the path and its permissions") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_config(
    config_dir: str | Path | None = None, overrides: dict[str, Any] | None = None, *, profile: str | None = None
) -> TradelabConfig:
    """Load the section files, lay the run profile over them, apply overrides and validate.

    Args:
        config_dir: Directory holding the YAML files; default the project's ``config/``.
        profile: Name of the run profile (``<config_dir>/profiles/<name>.yaml``, else the shipped one); None =
            :data:`~tradelab.config.profile.DEFAULT_PROFILE`.
        overrides: Dotted keys to replace after the profile (and after :data:`DEFAULT_MODEL_ENV`), e.g.
            ``{"ppo.n_steps": 128}``. Unknown keys still fail.

    Returns:
        The frozen, validated configuration; ``config.profile`` names the profile.

    Raises:
        ConfigError: A file is missing or malformed, the profile is unknown, or a value (in a section file or the
            profile) is unknown, mistyped or out of range; the message names the file that holds it.
    """
    directory = _config_dir(config_dir)
    name = DEFAULT_PROFILE if profile is None else profile
    chosen = read_profile(name, directory, DEFAULT_CONFIG_DIR, SECTION_FILES, read_yaml)
    raw = {section: read_yaml(directory / file) for section, file in SECTION_FILES.items()}
    raw = deep_merge(raw, chosen.overlay)
    default_model = os.environ.get(DEFAULT_MODEL_ENV)
    if default_model:  # after the profile: the variable replaces every profile's default base (make demo-smollm2)
        _apply_override(raw, "llm.default_model", default_model)
    for dotted, value in (overrides or {}).items():
        _apply_override(raw, dotted, value)
    try:
        return TradelabConfig.model_validate({**raw, "profile": name})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, directory, chosen)) from None


def available_profiles(config_dir: str | Path | None = None) -> list[str]:
    """The profile names ``load_config(config_dir, profile=...)`` accepts, sorted."""
    return _available(_config_dir(config_dir), DEFAULT_CONFIG_DIR)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (a bench's ``--set``) as the ``overrides`` of :func:`load_config`.

    Values are read as YAML, so numbers, booleans and ``null`` keep their types and anything else stays a string.

    Raises:
        ConfigError: An item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. stage1.refinement.hindsight_bars=512")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _config_dir(config_dir: str | Path | None) -> Path:
    directory = Path(config_dir) if config_dir else DEFAULT_CONFIG_DIR
    if not directory.is_dir():
        state = "is a file" if directory.exists() else "does not exist"
        raise ConfigError(
            f"--config-dir {directory}: {state}; pass the folder holding app.yaml, ppo.yaml, ... (or leave it out "
            f"to use <root>/config or the shipped config/)"
        )
    return directory


def config_hash(config: BaseModel) -> str:
    """Stable 16-hex-digit hash of a resolved config's values (or any section's) for manifests.

    A whole config's profile name is left out: the hash says which values ran, the name which profile set them.
    """
    exclude = {"profile"} if isinstance(config, TradelabConfig) else None
    payload = json.dumps(config.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if parts[0] not in raw:
        raise ConfigError(f"override {dotted!r}: unknown section {parts[0]!r}; sections: {', '.join(raw)}")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a mapping")
    node[parts[-1]] = value


def _describe(exc: ValidationError, directory: Path, profile: Profile) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        section = str(loc[0])
        in_profile = profile.file_for(loc)
        file = in_profile or directory / SECTION_FILES.get(section, f"{section}.yaml")
        if in_profile is None and profile.touches(loc):
            file = f"{file} (with profile {profile.name}: {', '.join(str(f) for f in profile.files)})"
        # A profile file holds every section, so its key path starts at the section; a section file is the section.
        key = ".".join(str(p) for p in (loc if in_profile else loc[1:])) or "(top level)"
        hint = _hint(err, loc)
        value = err.get("input")
        shown = "" if err["type"] == "missing" else f" = {value!r}"
        lines.append(f"{file}: {key}{shown}: {err['msg']}{hint}")
    # One line: the CLI prints errors as a single line; several problems are separated by "; ".
    return "invalid configuration: " + "; ".join(lines)


def _hint(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    if err["type"] == "extra_forbidden":
        fields = _fields_at(TradelabConfig, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.5)
        if close:
            return f" (did you mean {close[0]}?)"
        return f" (allowed keys: {', '.join(fields)})" if fields else ""
    if err["type"] == "missing":
        return " (add this key; every key is documented by the comment above it in the shipped file)"
    if err["type"].endswith("_type") or err["type"] in {"literal_error", "string_pattern_mismatch"}:
        return " (fix the value's type or format)"
    if err["type"] in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        return " (choose a value inside the allowed range)"
    return ""


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking ``path`` from ``model`` (dict keys are skipped over)."""
    node: Any = model
    for part in path:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] / X | None to the model type inside."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp
