"""The verifiable, counterfactual trading reward every Stage 2 engine uses (ARCHITECTURE.md §8).

``compute_score`` parses the answer with the advisor's parser (a ``<think>`` block may come first), then replays the
answered action over the recorded forward window with :func:`tradelab.core.replay.simulate_action` -- the env's own
fills, exits and costs -- so any allowed action can be scored, not only the one Stage 1 took.

Score of a well-formed, allowed answer::

    score = format_bonus + clip(outcome_r, -r_clip, r_clip) / r_clip + calibration_weight * (1 - 2 * (conf - won)^2)

where ``outcome_r`` is the answer's R-multiple and the names are the weights of
:class:`tradelab.core.records.RewardWeights`. HOLD while flat has no trade of its own: it earns ``hold_avoid_weight
x`` the loss it avoided when every allowed entry would have lost, and costs ``hold_miss_weight x`` the best allowed
entry's R when one would have won; an answer without a confidence counts as ``neutral_confidence``. A malformed or
disallowed answer scores the fixed ``invalid_score``, below anything a valid answer can reach, so the ordering is:
right direction on a clear move > wrong direction > malformed. An answer containing any substring of the ground
truth's ``blocklist`` scores ``invalid_score`` too (``blocked`` = 1), whatever it says.

The weights and the blocklist are data, not code: each ground truth carries its ``reward_spec``
(:class:`tradelab.core.records.RewardSpec`, written at export from the config's ``dataset.reward_weights`` and
``dataset.blocklist``), so every engine scores with the figures recorded beside the data. A ground truth written
before the spec travelled gets :data:`tradelab.core.records.DEFAULT_REWARD_WEIGHTS`.

Pure Python on top of numpy-free modules; deterministic; the parsed ground truth and its directional outcomes are
cached by the ground-truth string, because GRPO scores several answers per prompt.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from tradelab.core import ACTION_IDS
from tradelab.core.parse import parse_advice
from tradelab.core.records import spec_of
from tradelab.core.replay import Counterfactual

CACHE_SIZE = 8192
"""Ground-truth strings kept parsed (the least recently used goes first)."""

SCORE_KEYS: tuple[str, ...] = (
    "score", "format", "action_valid", "outcome_r", "calibration", "confidence", "action_id", "bars_held", "best_r",
    "blocked",
)
"""Keys of every :func:`compute_score` result, in order; every value is a float."""


class _Truth(Counterfactual):
    """A parsed ground truth: the replayed outcomes, the reward's weights and the answers' blocklist."""

    __slots__ = ("blocklist", "weights")

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        spec = spec_of(data)
        self.weights = spec["weights"]
        self.blocklist = tuple(spec["blocklist"])


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parsed(ground_truth: str) -> _Truth:
    try:
        data = json.loads(ground_truth)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ground_truth is not the JSON object the dataset exporter writes: {exc}") from None
    return _Truth(data)


def _truth(ground_truth: str | dict[str, Any]) -> _Truth:
    return _Truth(ground_truth) if isinstance(ground_truth, dict) else _parsed(ground_truth)


def _result(score: float, fmt: float, valid: float, outcome_r: float, calibration: float, confidence: float,
            action_id: float, bars_held: float, best_r: float, blocked: float = 0.0) -> dict[str, float]:
    return {
        "score": float(score), "format": float(fmt), "action_valid": float(valid), "outcome_r": float(outcome_r),
        "calibration": float(calibration), "confidence": float(confidence), "action_id": float(action_id),
        "bars_held": float(bars_held), "best_r": float(best_r), "blocked": float(blocked),
    }


def compute_score(
    data_source: str, solution_str: str, ground_truth: str | dict[str, Any], extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one advisor answer against its recorded forward window.

    Args:
        data_source: The row's ``data_source`` (``tradelab/<MKT>``); not used in the score.
        solution_str: The generated answer (``ACTION | confidence | reason``, optionally after a think block).
        ground_truth: The row's ``reward_model.ground_truth`` JSON string (or the decoded object).
        extra_info: The row's ``extra_info``; not used in the score.
        **kwargs: Extra arguments engines pass (ignored).

    Returns:
        A dict with exactly :data:`SCORE_KEYS`, all floats. ``score`` is the reward.

    Raises:
        ValueError: ``ground_truth`` is not a valid ground-truth object (a dataset bug, never a model error).
    """
    truth = _truth(ground_truth)
    w = truth.weights
    invalid = w["invalid_score"]
    best = truth.best_entry_r()
    best_r = best if best is not None else 0.0
    advice = parse_advice(solution_str)
    if any(item in solution_str for item in truth.blocklist):
        return _result(invalid, float(advice.parse_ok), 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, best_r, blocked=1.0)
    if not advice.parse_ok:
        return _result(invalid, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, best_r)
    action = advice.action or "HOLD"
    confidence = advice.confidence if advice.confidence is not None else w["neutral_confidence"]
    if action not in truth.allowed:
        return _result(invalid, 1.0, 0.0, 0.0, 0.0, confidence, ACTION_IDS[action], 0.0, best_r)
    if action == "HOLD" and truth.position is None:
        if best is None:
            outcome_r, won = 0.0, True
        elif best > 0.0:
            outcome_r, won = -w["hold_miss_weight"] * best, False
        else:
            outcome_r, won = w["hold_avoid_weight"] * -best, True
        bars_held = 0
    else:
        sim = truth.sim(action)
        outcome_r, won, bars_held = sim.r_multiple, sim.r_multiple > 0.0, sim.bars_held
    calibration = 1.0 - 2.0 * (confidence - (1.0 if won else 0.0)) ** 2
    r_clip = w["r_clip"]
    outcome_term = max(-r_clip, min(r_clip, outcome_r)) / r_clip
    score = w["format_bonus"] + outcome_term + w["calibration_weight"] * calibration
    return _result(score, 1.0, 1.0, outcome_r, calibration, confidence, ACTION_IDS[action], bars_held, best_r)
