"""The response parser: contract variants, failures with error kinds, and the mask check."""

from __future__ import annotations

import json

import pytest

from tradelab.core import ACTION_IDS, ACTIONS
from tradelab.core.parse import (
    ALIASES,
    ERROR_BAD_CONFIDENCE,
    ERROR_DISALLOWED,
    ERROR_EMPTY,
    ERROR_NO_ACTION,
    ERROR_UNKNOWN_ACTION,
    PARSE_ERRORS,
    Advice,
    check_allowed,
    format_advice,
    parse_advice,
)

# (text, action, confidence, reason); reason None = not checked
VALID_CASES = [
    ("BUY | 0.72 | uptrend above VWAP", "BUY", 0.72, "uptrend above VWAP"),
    ("SELL|0.6|downtrend", "SELL", 0.6, "downtrend"),
    ("  hold   |  0.5  |  no edge  ", "HOLD", 0.5, "no edge"),
    ("Buy | 0.9 | strong", "BUY", 0.9, "strong"),
    ("MOVE_TO_BE | 0.8 | protect open profit", "MOVE_TO_BE", 0.8, "protect open profit"),
    ("ENABLE_TRAIL | 0.7 | trend extended", "ENABLE_TRAIL", 0.7, "trend extended"),
    ("DISABLE_TRAIL | 0.4 | chop", "DISABLE_TRAIL", 0.4, "chop"),
    ("BUY | 0.8", "BUY", 0.8, ""),
    ("BUY | 0.8 |", "BUY", 0.8, ""),
    ("BUY", "BUY", None, ""),
    ("SELL | strong downtrend", "SELL", None, "strong downtrend"),
    ("BUY | 85% | momentum", "BUY", 0.85, "momentum"),
    ("BUY | 85 | momentum", "BUY", 0.85, "momentum"),
    ("BUY | 1.7 | over-confident", "BUY", 1.0, "over-confident"),
    ("BUY | 250 | way over", "BUY", 1.0, "way over"),
    ("SELL | -0.3 | negative", "SELL", 0.0, "negative"),
    ("BUY | confidence: 0.65 | labelled field", "BUY", 0.65, "labelled field"),
    ("BUY | high | trend", "BUY", 0.8, "trend"),
    ("MOVE_SL_TO_BE | 0.8 | lock it", "MOVE_TO_BE", 0.8, "lock it"),
    ("BREAKEVEN | 0.7 | lock", "MOVE_TO_BE", 0.7, "lock"),
    ("move stop to breakeven | 0.6 | lock", "MOVE_TO_BE", 0.6, "lock"),
    ("LONG | 0.7 | up", "BUY", 0.7, "up"),
    ("short | 0.7 | down", "SELL", 0.7, "down"),
    ("TRAIL_ON | 0.6 | run it", "ENABLE_TRAIL", 0.6, "run it"),
    ("trail-off | 0.6 | chop", "DISABLE_TRAIL", 0.6, "chop"),
    ("Decision: BUY | 0.7 | trend", "BUY", 0.7, "trend"),
    ("Action: sell | 0.55 | fade", "SELL", 0.55, "fade"),
    ("**Final answer:** HOLD | 0.5 | wait", "HOLD", 0.5, "wait"),
    ("`BUY | 0.7 | trend`", "BUY", 0.7, "trend"),
    ("| BUY | 0.7 | trend |", "BUY", 0.7, "trend"),
    ("<think>price is above vwap, SELL looks wrong</think>\nBUY | 0.7 | trend", "BUY", 0.7, "trend"),
    ("<THINK>\nmulti\nline\n</THINK> SELL | 0.6 | x", "SELL", 0.6, "x"),
    ("reasoning left open by the template</think>HOLD | 0.5 | flat", "HOLD", 0.5, "flat"),
    ("BUY | 0.7 | first\nSELL | 0.9 | second", "BUY", 0.7, "first"),
    ("Let me look at the context.\nSELL | 0.6 | down", "SELL", 0.6, "down"),
    ("Hold on, the trend is mixed.\nBUY | 0.6 | up", "BUY", 0.6, "up"),
    ('{"action": "BUY", "confidence": 0.8, "reason": "trend"}', "BUY", 0.8, "trend"),
    ('{"Action": "move sl to be", "Confidence": "75%", "Reason": "lock"}', "MOVE_TO_BE", 0.75, "lock"),
    ('Here you go:\n{\n  "action": "SELL",\n  "confidence": 0.4\n}', "SELL", 0.4, ""),
    ('```json\n{"action": "hold", "confidence": 1, "reason": "none"}\n```', "HOLD", 1.0, "none"),
    ("BUY 0.8 uptrend", "BUY", 0.8, "uptrend"),
    ("SELL (confidence 70%) - breakdown", "SELL", 0.7, "breakdown"),
    ("BUY with confidence 0.9 because trend", "BUY", 0.9, None),
    ("1. HOLD | 0.5 | numbered", "HOLD", 0.5, "numbered"),
    ("BUY | 0.7 | reason with | a pipe", "BUY", 0.7, "reason with a pipe"),
    ("ACTION | CONFIDENCE | REASON\nBUY | 0.7 | header first", "BUY", 0.7, "header first"),
]


@pytest.mark.parametrize(("text", "action", "confidence", "reason"), VALID_CASES)
def test_valid_variants(text: str, action: str, confidence: float | None, reason: str | None) -> None:
    advice = parse_advice(text)
    assert advice.parse_ok, advice
    assert advice.error is None
    assert advice.action == action
    assert advice.action_id == ACTION_IDS[action]
    if confidence is None:
        assert advice.confidence is None
    else:
        assert advice.confidence == pytest.approx(confidence)
    if reason is not None:
        assert advice.reason == reason


INVALID_CASES = [
    ("", ERROR_EMPTY),
    ("   \n\t ", ERROR_EMPTY),
    (None, ERROR_EMPTY),
    (42, ERROR_EMPTY),
    ("<think>only thoughts</think>", ERROR_EMPTY),
    ("<think>never closed BUY | 0.9 | x", ERROR_EMPTY),
    ("I am not sure what to do here.", ERROR_NO_ACTION),
    ("Long story short, the market is choppy.", ERROR_NO_ACTION),
    ("FLIP | 0.7 | reverse", ERROR_UNKNOWN_ACTION),
    ('{"action": "YOLO", "confidence": 0.5}', ERROR_UNKNOWN_ACTION),
    ("BUY | lots | trend", ERROR_BAD_CONFIDENCE),
    ("BUY | 0.7x | trend", ERROR_BAD_CONFIDENCE),
    ("BUY | nan | trend", ERROR_BAD_CONFIDENCE),
    ('{"action": "BUY", "confidence": "sure"}', ERROR_BAD_CONFIDENCE),
    ('{"action": "BUY", "confidence": true}', ERROR_BAD_CONFIDENCE),
    ("FLIP | 0.7 | x\nBUY | 0.8 | y", ERROR_UNKNOWN_ACTION),
    ("{not json at all", ERROR_NO_ACTION),
]


@pytest.mark.parametrize(("text", "error"), INVALID_CASES)
def test_invalid_inputs_fail_with_kind(text: object, error: str) -> None:
    advice = parse_advice(text)
    assert not advice.parse_ok
    assert advice.error == error
    assert error in PARSE_ERRORS
    assert advice.action is None and advice.action_id is None and advice.confidence is None


@pytest.mark.parametrize("seed", range(5))
def test_never_raises_on_random_text(seed: int) -> None:
    import random

    rng = random.Random(seed)
    alphabet = "BUYSELHOD|{}<>/think\"':,.0123456789% \n_-"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        advice = parse_advice(text)
        assert isinstance(advice, Advice)
        assert advice.parse_ok == (advice.action is not None)
        if advice.confidence is not None:
            assert 0.0 <= advice.confidence <= 1.0


@pytest.mark.parametrize("action", ACTIONS)
def test_format_round_trip(action: str) -> None:
    text = format_advice(action, 0.734, "a | reason\nwith newline")
    assert "\n" not in text
    advice = parse_advice(text)
    assert (advice.action, advice.confidence, advice.reason) == (action, 0.73, "a / reason with newline")


def test_every_alias_maps_to_a_known_action() -> None:
    assert set(ALIASES.values()) == set(ACTIONS)
    for alias, action in ALIASES.items():
        assert parse_advice(f"{alias} | 0.5 | r").action == action


def test_to_dict_has_the_experience_keys() -> None:
    record = parse_advice("SELL | 0.3 | r").to_dict()
    assert list(record) == ["action", "action_id", "confidence", "reason", "parse_ok", "error"]
    assert json.loads(json.dumps(record)) == record


def test_check_allowed_flags_masked_action_separately() -> None:
    advice = parse_advice("BUY | 0.7 | trend")
    assert check_allowed(advice, ["HOLD", "BUY", "SELL"]) is advice
    flagged = check_allowed(advice, ["HOLD", "MOVE_TO_BE"])
    assert flagged.parse_ok and flagged.action == "BUY" and flagged.confidence == 0.7
    assert flagged.error == ERROR_DISALLOWED and not flagged.allowed
    bad = parse_advice("nonsense here")
    assert check_allowed(bad, ["HOLD"]) is bad
