"""Named run profiles: YAML overlays of the section files, found by name and laid over them once, by the loader.

A profile file (``<config dir>/profiles/<name>.yaml``, else the shipped ``config/profiles/<name>.yaml``) is a
mapping of section names to the keys it changes, in the section files' own shape (``ppo: {n_envs: 4}``), and may
``extends:`` one other profile (one level: the profile it extends extends nothing). :func:`read_profile` returns
the merged overlay with, for every key path it sets, the file that set it, so a schema error can name the profile
file rather than the section file. Nothing here knows what any profile is for: a stage reads plain config fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.errors import ConfigError

DEFAULT_PROFILE = "pod"
"""The profile a run gets when none is named: the section files' full-size values (an empty overlay)."""
SMOKE_PROFILE = "smoke"
"""The profile ``--test`` names: the tiny CPU run CI checks."""
PROFILES_DIR = "profiles"
"""Folder of profile files inside a config directory."""
EXTENDS_KEY = "extends"
"""Top-level key of a profile file naming the one profile it is laid over."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Profile:
    """A profile resolved to one overlay.

    Attributes:
        name: The profile's name (its file stem).
        files: The files it was read from, the one it extends first.
        overlay: Section name -> the nested keys it sets (its own keys laid over the extended profile's).
        origins: Dotted key path (``ppo.n_envs``) -> the file whose value is in ``overlay``.
    """

    name: str
    files: tuple[Path, ...]
    overlay: dict[str, Any]
    origins: dict[str, Path] = field(default_factory=dict)

    def file_for(self, path: Iterable[Any]) -> Path | None:
        """The profile file that set ``path`` (a key path from the section down) or any key above it, else None."""
        parts = [str(p) for p in path]
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found is not None:
                return found
        return None

    def touches(self, path: Iterable[Any]) -> bool:
        """Whether the profile sets any key at or below ``path`` (a model-level check may fail on its values)."""
        prefix = ".".join(str(p) for p in path)
        return any(key == prefix or key.startswith(f"{prefix}.") for key in self.origins)


def profile_dirs(config_dir: Path, shipped_dir: Path) -> list[Path]:
    """Where profiles are looked up, in order: the config directory's own ``profiles/``, then the shipped one."""
    dirs = [config_dir / PROFILES_DIR, shipped_dir / PROFILES_DIR]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def available_profiles(config_dir: Path, shipped_dir: Path) -> list[str]:
    """Every profile name found in :func:`profile_dirs`, sorted."""
    names = {p.stem for d in profile_dirs(config_dir, shipped_dir) if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(n for n in names if _NAME.match(n))


def profile_path(name: str, config_dir: Path, shipped_dir: Path) -> Path:
    """The file of profile ``name`` (the config directory's own first).

    Raises:
        ConfigError: No profile of that name, in one line with the available ones.
    """
    if isinstance(name, str) and _NAME.match(name):
        for folder in profile_dirs(config_dir, shipped_dir):
            candidate = folder / f"{name}.yaml"
            if candidate.is_file():
                return candidate
    names = available_profiles(config_dir, shipped_dir)
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    where = " or ".join(str(d) for d in profile_dirs(config_dir, shipped_dir))
    raise ConfigError(f"--profile {name!r}: no such profile in {where}; {hint}available: {', '.join(names) or 'none'}")


def read_profile(
    name: str, config_dir: Path, shipped_dir: Path, sections: Iterable[str], read_yaml: Any
) -> Profile:
    """Read profile ``name`` and the one it extends into a single overlay.

    Args:
        name: The profile's name.
        config_dir: The config directory in use (its ``profiles/`` is searched first).
        shipped_dir: The project's own config directory (the fallback).
        sections: The section names a profile may set.
        read_yaml: Reads one YAML mapping, raising :class:`ConfigError` naming the file.

    Raises:
        ConfigError: Unknown profile, a top-level key that is no section, a section that is not a mapping, or an
            ``extends`` chain longer than one level or naming itself.
    """
    sections = tuple(sections)
    path = profile_path(name, config_dir, shipped_dir)
    data = read_yaml(path)
    files: list[Path] = []
    overlay: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    parent = data.pop(EXTENDS_KEY, None)
    if parent is not None:
        if not isinstance(parent, str) or parent == name:
            raise ConfigError(f"{path}: {EXTENDS_KEY} = {parent!r}: name one other profile (e.g. extends: smoke)")
        parent_path = profile_path(parent, config_dir, shipped_dir)
        parent_data = read_yaml(parent_path)
        if EXTENDS_KEY in parent_data:
            raise ConfigError(
                f"{path}: extends {parent!r}, which itself extends {parent_data[EXTENDS_KEY]!r} ({parent_path}); a "
                f"profile extends one level only: copy the keys it needs into {path.name}"
            )
        _layer(overlay, origins, _checked(parent_data, parent_path, sections), parent_path)
        files.append(parent_path)
    _layer(overlay, origins, _checked(data, path, sections), path)
    files.append(path)
    return Profile(name=name, files=tuple(files), overlay=overlay, origins=origins)


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on it: mappings merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _checked(data: dict[str, Any], path: Path, sections: tuple[str, ...]) -> dict[str, Any]:
    for key, value in data.items():
        if key not in sections:
            close = difflib.get_close_matches(str(key), [*sections, EXTENDS_KEY], n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join((*sections, EXTENDS_KEY))}"
            raise ConfigError(f"{path}: {key}: not a config section ({hint})")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key} = {value!r}: a section must be a mapping of its keys, e.g. "
                              f"{key}: {{...}}")
    return data


def _layer(overlay: dict[str, Any], origins: dict[str, Path], data: dict[str, Any], path: Path) -> None:
    merged = deep_merge(overlay, data)
    overlay.clear()
    overlay.update(merged)
    for dotted in _leaves(data):
        origins[dotted] = path


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, f"{dotted}."))
        else:
            out.append(dotted)
    return out
