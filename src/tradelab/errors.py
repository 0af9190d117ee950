"""The tradelab exception hierarchy.

Library code raises these; only the CLI boundary catches them. Every message states the offending file, field and
value, and how to fix it.
"""

from __future__ import annotations


class TradelabError(Exception):
    """Base class of every error tradelab raises on purpose.

    Attributes:
        exit_code: Process exit code the CLI uses for this error (2 = user error, 1 = a stage failed).
    """

    exit_code: int = 2


class ConfigError(TradelabError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class DataError(TradelabError):
    """Input data cannot be read, parsed or repaired."""


class StageNotReady(TradelabError):
    """A stage's prerequisite is missing (no data, no Stage 1 manifest, no experiences with outcomes...)."""


class PreflightError(TradelabError):
    """The launch environment failed a preflight check."""


class MissingDependency(TradelabError):
    """An optional dependency, a model directory or an external repository is not installed or not found."""


class WorkspaceError(TradelabError):
    """A workspace file or folder cannot be written or read (permissions, disk full, a file where a folder belongs),
    or a stage's artifact would be replaced or loaded unsafely (a changed hash, a run already in progress)."""


class StageFailed(TradelabError):
    """A stage started and then failed (for example a launched trainer exited non-zero)."""

    exit_code = 1
