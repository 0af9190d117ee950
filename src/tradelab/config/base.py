"""The strict base model every config section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Frozen, typed, strict: unknown keys are errors and no silent type coercion (``"5"`` is not an int).

    ``strict=True`` still accepts an int where a float is declared, so ``lr: 1`` works. Non-finite numbers
    (``.inf``, ``.nan``) are rejected everywhere: no setting means anything sensible as infinity or NaN.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True, allow_inf_nan=False)
