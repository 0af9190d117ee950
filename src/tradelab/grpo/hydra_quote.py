"""Quoting values for Hydra's override grammar, so a path with ``,``, ``=``, spaces, brackets or ``${`` stays one
literal value.

Unquoted, ``a,b`` is a sweep, ``=`` and brackets are syntax, and ``${...}`` is an interpolation that verl resolves
later (and fails on). A value with any character outside the plain set is single-quoted: quotes are escaped, runs of
backslashes before a quote or at the end are doubled (Hydra's rule for quoted values), and ``${`` becomes ``\\${``
(OmegaConf's escape for a literal ``${``). Plain values are left as they are, so ordinary commands read as before.
Pure Python.
"""

from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z0-9_./@%+:\-]*")
"""Values Hydra reads literally without quotes (no interpolation, no sweep, no syntax characters)."""


def hydra_quote(value: str) -> str:
    """``value`` as one literal Hydra override value (quoted only when it has to be)."""
    if _PLAIN.fullmatch(value) and not value.startswith(("+", "~", "-")):
        return value
    escaped = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, escaped)
    return "'" + escaped.replace("'", "\\'") + "'"
