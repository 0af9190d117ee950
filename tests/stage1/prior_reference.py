"""A numpy reference for the fusion prior, written independently of the torch version the policy uses."""

from __future__ import annotations

import numpy as np

from tradelab.stage1.advice import BUY_ID, HAS_ADVICE_INDEX, HOLD_ID, N_ACTIONS, PRIOR_EPS, SELL_ID, SLOT_SIZE


def prior_numpy(slots: np.ndarray, masks: np.ndarray, confidence_floor: float) -> np.ndarray:
    """Reference prior over actions for a batch of slot vectors: the rule :func:`tradelab.stage1.policy.log_prior`
    documents, written with numpy loops. Masked actions get probability 0.

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
