"""The ``reward_model.ground_truth`` payload: everything the reward needs to score any answer, as one JSON string.

Built from one experience record (ARCHITECTURE.md §6) by :func:`build_ground_truth`; read back by the reward. Pure
Python (json, datetime): the reward imports this module under a bare interpreter with only numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tradelab.core import ACTIONS
from tradelab.core.records import SCORED, ExperienceRecord, GroundTruth, check_record, reward_spec
from tradelab.core.replay import bars_to_flatten
from tradelab.core.tradesim import COST_KEYS, RULE_KEYS

GROUND_TRUTH_VERSION = 3
"""Version of the ground-truth JSON layout; bump when a key changes meaning (2: ``blocklist``; 3: ``reward_spec``
carries the reward's weights and the blocklist, :class:`tradelab.core.records.RewardSpec`)."""

PRICE_KEYS: tuple[str, ...] = ("open", "high", "low", "close")
POSITION_KEYS: tuple[str, ...] = ("side", "entry_price", "stop", "target", "trail_on", "bars_in_trade")


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _finite_floats(values: list[Any]) -> list[float] | None:
    """A copy of ``values`` when every item is a finite float (checked in C: the export meets a million of these),
    else None so the caller's item-by-item check names the bad one."""
    if set(map(type, values)) != {float}:
        return None
    try:
        return list(values) if math.isfinite(math.fsum(values)) else None
    except (OverflowError, ValueError):  # a sum past the float range; inf and -inf together
        return None


def _forward(record: ExperienceRecord) -> dict[str, list[float]]:
    forward = record["forward"]
    prices = {}
    for key in PRICE_KEYS:
        values = forward.get(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"forward.{key} must be a non-empty list")
        prices[key] = _finite_floats(values) or [_finite(v, f"forward.{key}[{i}]") for i, v in enumerate(values)]
    atr_path = forward.get("atr_path")
    if atr_path is not None:
        # Each forward bar's ATR lets the replay ratchet a trailing stop exactly as the env did.
        if not isinstance(atr_path, list):
            raise ValueError("forward.atr_path must be a list")
        prices["atr_path"] = _finite_floats(atr_path) or [
            _finite(v, f"forward.atr_path[{i}]") for i, v in enumerate(atr_path)
        ]
    if len({len(v) for v in prices.values()}) != 1:
        raise ValueError("forward open/high/low/close/atr_path have different lengths")
    return prices


def _decision_atr(record: ExperienceRecord) -> float:
    atr = record["forward"].get("atr")
    context = record.get("market_context")
    if atr is None and context is not None:
        atr = context.get("atr")
    atr_value = _finite(atr, "forward.atr")
    if atr_value <= 0:
        raise ValueError(f"forward.atr must be positive, got {atr!r}")
    return atr_value


def _position(record: ExperienceRecord) -> dict[str, Any] | None:
    position = record.get("position")
    if position is None or position.get("side") in (None, "flat"):
        return None
    kept = {k: position.get(k) for k in POSITION_KEYS}
    for key in ("entry_price", "stop", "target"):
        kept[key] = _finite(kept[key], f"position.{key}")
    kept["trail_on"] = bool(kept["trail_on"])
    kept["bars_in_trade"] = int(kept["bars_in_trade"] or 0)
    return kept


def flatten_after_bars(timestamp: str, rules: dict[str, Any], horizon_bars: int) -> int | None:
    """Forward bars until the env's flatten time, for 1-minute bars stamped at their start.

    Returns:
        ``rules["flatten_after_bars"]`` when the record carries the key (null: no flatten in the window); else
        :func:`tradelab.core.replay.bars_to_flatten` for ``rules["flatten_time"]`` (the env's own count); None when the
        flatten falls beyond the forward window or the record has no flatten time.
    """
    if "flatten_after_bars" in rules:
        explicit = rules["flatten_after_bars"]
        if explicit is None:
            return None
        if isinstance(explicit, bool) or not isinstance(explicit, int):
            raise ValueError(f"rules.flatten_after_bars must be an integer or null, got {explicit!r}")
        return explicit if 1 <= explicit <= horizon_bars else None
    flatten_time = rules.get("flatten_time")
    if not isinstance(flatten_time, str) or not timestamp:
        return None
    bars = bars_to_flatten(timestamp, flatten_time)
    return bars if bars <= horizon_bars else None


def build_ground_truth(
    record: ExperienceRecord, *, blocklist: Sequence[str] = (), weights: Mapping[str, float] | None = None,
    checked: bool = False,
) -> GroundTruth:
    """The ground-truth object for one experience record.

    Args:
        record: The experience record; its :data:`~tradelab.core.records.SCORED` fields are required.
        blocklist: Substrings that make any answer to this prompt score the malformed penalty.
        weights: The reward's weights (:class:`tradelab.core.records.RewardWeights`); missing ones take the
            defaults. Weights and blocklist travel with the data as ``reward_spec``, so every engine (local, PyPI
            verl, the SofT-GRPO fork) scores with the same figures through the reward.
        checked: The caller already ran :func:`tradelab.core.records.check_record` on ``record``; otherwise it
            runs here, requiring only the fields the ground truth is built from (:data:`~tradelab.core.records.SCORED`).

    Raises:
        ValueError: A field the reward needs is missing or malformed (the message names it).
    """
    if not checked:
        check_record(record, required=SCORED)
    prices = _forward(record)
    contract, rules = record["contract"], record["rules"]
    costs = {k: _finite(contract.get(k), f"contract.{k}") for k in COST_KEYS}
    exit_rules = {k: _finite(rules.get(k), f"rules.{k}") for k in RULE_KEYS}
    allowed = record["allowed_actions"]
    if not allowed or any(a not in ACTIONS for a in allowed):
        raise ValueError(f"allowed_actions must be a non-empty list of {ACTIONS}, got {allowed!r}")
    context = record.get("market_context")
    close = context["close"] if context is not None and "close" in context else prices["open"][0]
    advice = record.get("advice")
    taken = record.get("action_taken")
    horizon = len(prices["open"])
    truth: GroundTruth = {
        "v": GROUND_TRUTH_VERSION,
        "market": str(record.get("market", "")),
        "timestamp": str(record.get("timestamp", "")),
        "forward": {**prices, "atr": _decision_atr(record), "horizon_bars": horizon},
        "decision_close": _finite(close, "market_context.close"),
        "position": _position(record),
        "allowed_actions": list(allowed),
        "contract": costs,
        "rules": exit_rules,
        "flatten_after_bars": flatten_after_bars(str(record.get("timestamp", "")), rules, horizon),
        "outcome": record.get("outcome"),
        "action_taken": taken["action"] if taken is not None else None,
        "advice": {"action": advice.get("action") if advice is not None else None,
                   "confidence": advice.get("confidence") if advice is not None else None},
        "reward_spec": reward_spec(weights, blocklist),
    }
    return truth


def dumps(ground_truth: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON (the same record always gives the same string, so the reward's cache hits)."""
    return json.dumps(ground_truth, separators=(",", ":"), sort_keys=True)
