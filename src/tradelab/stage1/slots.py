"""The advisor slots at the end of every observation, and the prior the fusion policy builds from them.

Layout of the last :data:`SLOT_SIZE` floats (the env leaves them 0; Stage 1 fills them):
``[conf·onehot(action) for the 6 actions] + [age_bars, has_advice]``.

Pure numpy: the VecEnv wrapper writes slots with these helpers and the tests check the prior against them.
"""

from __future__ import annotations

import numpy as np

from tradelab import ACTION_IDS, ACTIONS

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


def prior_numpy(slots: np.ndarray, masks: np.ndarray, confidence_floor: float) -> np.ndarray:
    """Reference prior over actions for a batch of slot vectors (mirrors the torch version in ``policy``).

    The advised action gets its confidence; the rest ``1 - confidence`` is spread evenly over the other allowed
    actions. No advice, advice below ``confidence_floor``, advice for a masked action, or HOLD while an entry is
    allowed gives the uniform prior over allowed actions (no effect on the policy). Masked actions get probability 0.

    HOLD while flat is an abstention, not a view: the account is already doing nothing, and an advisor that mostly
    says "no setup" would otherwise pull every entry toward HOLD and stop the fused policy from trading at all.

    Args:
        slots: ``(n, SLOT_SIZE)`` raw slot values.
        masks: ``(n, N_ACTIONS)`` booleans, True = allowed.
        confidence_floor: Minimum confidence that counts as advice.

    Returns:
        ``(n, N_ACTIONS)`` float64 probabilities.
    """
    slots = np.asarray(slots, dtype=np.float64).reshape(-1, SLOT_SIZE)
    masks = np.asarray(masks, dtype=bool).reshape(-1, N_ACTIONS)
    onehot = slots[:, :N_ACTIONS]
    conf = onehot.max(axis=1)
    advised = onehot.argmax(axis=1)
    n_allowed = masks.sum(axis=1)
    rows = np.arange(len(slots))
    abstains = (advised == HOLD_ID) & (masks[:, BUY_ID] | masks[:, SELL_ID])
    usable = ((slots[:, HAS_ADVICE_INDEX] > 0.5) & (conf >= confidence_floor) & masks[rows, advised] & (n_allowed > 1)
              & ~abstains)
    prior = masks / np.maximum(n_allowed, 1)[:, None]
    for i in np.flatnonzero(usable):
        c = min(conf[i], 1.0 - PRIOR_EPS)
        prior[i] = masks[i] * (1.0 - c) / (n_allowed[i] - 1)
        prior[i, advised[i]] = c
    return prior
