"""The advisor slots at the end of every observation, and the prior the fusion policy builds from them.

Layout of the last :data:`SLOT_SIZE` floats (the env leaves them 0; Stage 1 fills them):
``[conf·onehot(action) for the 6 actions] + [age_bars, has_advice]``.

Pure numpy: the VecEnv wrapper writes slots with these helpers; the prior itself is
:func:`tradelab.stage1.policy.log_prior`.
"""

from __future__ import annotations

import numpy as np

from tradelab.core import ACTION_IDS, ACTIONS

N_ACTIONS = len(ACTIONS)
SLOT_SIZE = N_ACTIONS + 2
"""Floats per observation reserved for advice: one-hot×confidence, age in bars, has-advice flag."""
HOLD_ID, BUY_ID, SELL_ID = ACTION_IDS["HOLD"], ACTION_IDS["BUY"], ACTION_IDS["SELL"]
"""Ids the abstention rule needs: HOLD advice while BUY or SELL is allowed carries no view."""
AGE_INDEX = N_ACTIONS
HAS_ADVICE_INDEX = N_ACTIONS + 1
PRIOR_EPS = 1e-6
"""Smallest prior probability of an allowed action, so log(prior) stays finite at confidence 1."""


def encode_slots(action_id: int | None, confidence: float | None, age_bars: int) -> np.ndarray:
    """The slot vector for one env's current advice (all zeros when there is none).

    Args:
        action_id: Advised action id, or None for no advice.
        confidence: Confidence in [0, 1]; None counts as 0 (no usable advice).
        age_bars: Bars since the advice was given.

    Returns:
        float32 array of length :data:`SLOT_SIZE`.
    """
    slots = np.zeros(SLOT_SIZE, dtype=np.float32)
    if action_id is None:
        return slots
    slots[int(action_id)] = float(confidence or 0.0)
    slots[AGE_INDEX] = float(age_bars)
    slots[HAS_ADVICE_INDEX] = 1.0
    return slots
