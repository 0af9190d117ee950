"""The Stage 2 reward: fixed keys, ordering, counterfactual HOLD, env-identical simulation."""

from __future__ import annotations

import json

import pytest
from stage2_factory import make_record

from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.replay import simulate_action
from tradelab.core.records import DEFAULT_REWARD_WEIGHTS
from tradelab.core.reward import SCORE_KEYS, compute_score
from tradelab.core.tradesim import Costs, ExitRules

INVALID_SCORE = DEFAULT_REWARD_WEIGHTS["invalid_score"]

ANSWERS = (
    "BUY | 0.8 | trend", "SELL | 0.6 | fade", "HOLD | 0.5 | wait", "<think>up move</think>\nBUY | 0.9 | up",
    "nonsense without an action", "", "MOVE_TO_BE | 0.5 | lock", '{"action": "SELL", "confidence": 0.7}',
)


def _truth(trend: str, **kwargs: object) -> str:
    return dumps(build_ground_truth(make_record(0, trend=trend, **kwargs)))


def _score(answer: str, truth: str) -> float:
    return compute_score("tradelab/NQ", answer, truth, {"index": 0})["score"]


def test_every_call_returns_the_same_float_keys() -> None:
    for trend in ("up", "down", "flat"):
        for answer in ANSWERS:
            result = compute_score("tradelab/NQ", answer, _truth(trend))
            assert tuple(result) == SCORE_KEYS
            assert all(isinstance(v, float) for v in result.values())


def test_right_direction_beats_wrong_beats_malformed() -> None:
    for trend, right, wrong in (("up", "BUY", "SELL"), ("down", "SELL", "BUY")):
        truth = _truth(trend)
        right_score = _score(f"{right} | 0.7 | clear move", truth)
        wrong_score = _score(f"{wrong} | 0.7 | guess", truth)
        malformed = _score("I would rather not say", truth)
        assert right_score > wrong_score > malformed == INVALID_SCORE


def test_disallowed_answer_gets_the_fixed_penalty() -> None:
    truth = _truth("up", allowed=["HOLD", "SELL"])
    result = compute_score("tradelab/NQ", "BUY | 0.9 | would have won", truth)
    assert result["score"] == INVALID_SCORE and result["format"] == 1.0 and result["action_valid"] == 0.0


def test_hold_is_scored_by_what_it_missed_or_avoided() -> None:
    up = compute_score("tradelab/NQ", "HOLD | 0.5 | wait", _truth("up"))
    assert up["outcome_r"] < 0 and up["best_r"] > 0
    assert _score("BUY | 0.5 | go", _truth("up")) > up["score"]
    chop = compute_score("tradelab/NQ", "HOLD | 0.5 | wait", _truth("flat"))
    assert chop["best_r"] < 0 < chop["outcome_r"]
    assert chop["score"] > _score("BUY | 0.5 | go", _truth("flat"))
    assert chop["score"] > _score("SELL | 0.5 | go", _truth("flat"))


def test_outcome_is_the_env_simulation_of_the_answer() -> None:
    record = make_record(0, trend="up")
    truth = build_ground_truth(record)
    for action in ("BUY", "SELL"):
        expected = simulate_action(action, None, record["forward"], record["forward"]["atr"],
                                   Costs.from_dict(record["contract"]), ExitRules.from_dict(record["rules"]), None,
                                   decision_close=record["market_context"]["close"])
        result = compute_score("tradelab/NQ", f"{action} | 0.5 | x", dumps(truth))
        assert result["outcome_r"] == pytest.approx(expected.r_multiple)
        assert result["bars_held"] == expected.bars_held


def test_management_actions_in_a_position_are_scored() -> None:
    position = {"side": "long", "entry_price": 17990.0, "stop": 17980.0, "target": 18010.0, "trail_on": False,
                "unrealized_pnl": 200.0, "bars_in_trade": 4}
    truth = _truth("down", position=position, allowed=["HOLD", "MOVE_TO_BE", "ENABLE_TRAIL"])
    hold, to_be = _score("HOLD | 0.5 | x", truth), _score("MOVE_TO_BE | 0.5 | x", truth)
    assert to_be > hold
    assert _score("BUY | 0.5 | x", truth) == INVALID_SCORE


def test_confidence_calibration_is_a_small_term() -> None:
    truth = _truth("up")
    confident, timid = _score("BUY | 0.95 | x", truth), _score("BUY | 0.05 | x", truth)
    assert confident > timid
    assert confident - timid < 0.25


def test_deterministic_and_cache_independent() -> None:
    truth = _truth("down")
    first = [compute_score("tradelab/NQ", a, truth) for a in ANSWERS]
    again = [compute_score("tradelab/NQ", a, truth) for a in ANSWERS]
    decoded = [compute_score("tradelab/NQ", a, json.loads(truth)) for a in ANSWERS]
    assert first == again == decoded


def test_broken_ground_truth_is_an_error_not_a_score() -> None:
    with pytest.raises(ValueError, match="ground_truth"):
        compute_score("tradelab/NQ", "BUY | 0.5 | x", "{not json")


def test_trailing_stop_replay_uses_each_forward_bars_atr() -> None:
    """A trail enabled at the decision ratchets with the recorded per-bar ATR, as the env's trail does."""
    position = {"side": "long", "entry_price": 18000.0, "stop": 17990.0, "target": 18040.0, "trail_on": False,
                "unrealized_pnl": 0.0, "bars_in_trade": 3}
    record = make_record(0, position=position, allowed=["HOLD", "ENABLE_TRAIL", "MOVE_TO_BE"])
    closes = [18004.0, 18008.0, 18012.0, 18009.0, 18006.0, 18003.0]
    record["forward"] = {
        "horizon_bars": len(closes), "open": closes, "high": [c + 0.5 for c in closes],
        "low": [c - 0.5 for c in closes], "close": closes, "atr": 4.0,
    }
    outcomes = {}
    for label, atr_path in (("tight", [1.0] * len(closes)), ("wide", [12.0] * len(closes))):
        record["forward"]["atr_path"] = atr_path
        truth = build_ground_truth(record)
        assert truth["forward"]["atr_path"] == atr_path
        result = compute_score("tradelab/NQ", "ENABLE_TRAIL | 0.6 | lock gains", dumps(truth))
        expected = simulate_action(
            "ENABLE_TRAIL", truth["position"], record["forward"], 4.0, Costs.from_dict(truth["contract"]),
            ExitRules.from_dict(truth["rules"]), truth["flatten_after_bars"], decision_close=truth["decision_close"],
        )
        assert result["outcome_r"] == pytest.approx(expected.r_multiple)
        outcomes[label] = expected
    assert outcomes["tight"].exit_reason == "trail" and outcomes["wide"].exit_reason != "trail"
    assert outcomes["tight"].pnl_usd > outcomes["wide"].pnl_usd


def test_flatten_bars_without_an_explicit_count_use_the_envs_rule() -> None:
    """A 15:40 decision bar ends 15:41; the env flattens at the close of the first bar ending >= 15:55: bar 14."""
    from tradelab.core.ground_truth import flatten_after_bars

    rules = {"flatten_time": "15:55"}
    assert flatten_after_bars("2026-03-02T15:40:00-05:00", rules, 30) == 14
    assert flatten_after_bars("2026-03-02T15:40:00-05:00", rules, 10) is None  # beyond the window
    assert flatten_after_bars("2026-03-02T15:40:00-05:00", {**rules, "flatten_after_bars": 3}, 30) == 3


def test_blocklisted_answers_score_the_malformed_penalty() -> None:
    record = make_record(0, trend="up")
    truth = dumps(build_ground_truth(record, blocklist=["visit spam.example", ""]))
    blocked = compute_score("tradelab/NQ", "BUY | 0.9 | visit spam.example now", truth)
    losing = compute_score("tradelab/NQ", "SELL | 0.7 | wrong way", truth)
    assert blocked["score"] == INVALID_SCORE and blocked["blocked"] == 1.0
    assert losing["score"] > blocked["score"] and losing["blocked"] == 0.0
    assert blocked["score"] == _score("not an answer", truth)
    # Without a list in the ground truth (older datasets) nothing is blocked.
    assert compute_score("tradelab/NQ", "BUY | 0.9 | visit spam.example", _truth("up"))["blocked"] == 0.0


def test_a_reasoning_block_before_the_answer_line_scores_as_the_line_alone() -> None:
    from stage2_factory import make_record

    from tradelab.core.ground_truth import build_ground_truth

    truth = json.dumps(build_ground_truth(make_record(0, trend="up")))
    bare = compute_score("tradelab/NQ", "BUY | 0.80 | trend up", truth)
    reasoned = compute_score("tradelab/NQ", "<think>\nclose 18000.00 above vwap; SELL fades it\n</think>\n"
                             "BUY | 0.80 | trend up", truth)
    assert reasoned == bare and bare["format"] == 1.0 and bare["action_valid"] == 1.0
