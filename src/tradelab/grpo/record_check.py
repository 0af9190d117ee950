"""The experience record's type check, re-exported from :mod:`tradelab.core.records` (where it is declared once).

Stage 2 reads records written by Stage 1, by earlier versions, or edited by hand. A record whose field has the wrong
type (``action_taken: "BUY"``, ``contract: [1, 2]``) is reported by :func:`check_record` as one ``ValueError``
naming the field, so the export skips and counts it like a malformed line instead of failing deep inside the
ground-truth builder.
"""

from __future__ import annotations

from tradelab.core.records import NESTED, NULLABLE, OPTIONAL, REQUIRED, ExperienceRecord, check_record

__all__ = ["NESTED", "NULLABLE", "OPTIONAL", "REQUIRED", "ExperienceRecord", "check_record"]
