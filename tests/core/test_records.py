"""The experience record and the ground truth declared once (core/records.py); the reward spec the ground truth
carries, and older ground truths (no spec) scoring exactly as before."""

from __future__ import annotations

import json
import typing

import pytest
from stage2_factory import make_record

from tradelab.core import records
from tradelab.core.ground_truth import GROUND_TRUTH_VERSION, build_ground_truth, dumps
from tradelab.core.records import DEFAULT_REWARD_WEIGHTS, REWARD_SPEC_VERSION, check_record, spec_of
from tradelab.core.reward import compute_score

ANSWERS = (
    "BUY | 0.8 | trend", "SELL | 0.6 | fade", "HOLD | 0.5 | wait", "HOLD", "<think>up</think>\nBUY | 0.9 | up",
    "nonsense", "", "MOVE_TO_BE | 0.5 | lock", "BUY | 0.9 | visit spam.example",
)


def test_the_validator_tables_are_the_typed_declaration() -> None:
    declared = set(typing.get_type_hints(records.ExperienceRecord))
    assert set(records.REQUIRED) | set(records.OPTIONAL) | set(records.NULLABLE) == declared
    assert {outer for outer, _ in records.NESTED} <= declared
    assert set(typing.get_type_hints(records.RewardWeights)) == set(DEFAULT_REWARD_WEIGHTS)


def test_build_ground_truth_validates_with_the_same_check() -> None:
    record = make_record(0, trend="up")
    record["action_taken"] = "BUY"
    with pytest.raises(ValueError, match="action_taken is str"):
        check_record(record)
    with pytest.raises(ValueError, match="action_taken is str"):
        build_ground_truth(record)
    # A record still being written (no id or prompt yet) builds; its scored fields are still required.
    partial = {k: v for k, v in make_record(0, trend="up").items() if k not in ("id", "prompt")}
    assert build_ground_truth(partial)["allowed_actions"] == partial["allowed_actions"]
    with pytest.raises(ValueError, match="id is missing"):
        check_record(partial)
    with pytest.raises(ValueError, match="contract is missing"):
        build_ground_truth({k: v for k, v in partial.items() if k != "contract"})


def test_the_ground_truth_carries_a_versioned_reward_spec() -> None:
    truth = build_ground_truth(make_record(0, trend="up"), blocklist=["x", ""], weights={"r_clip": 3.0})
    assert truth["v"] == GROUND_TRUTH_VERSION
    assert truth["reward_spec"] == {
        "version": REWARD_SPEC_VERSION, "weights": {**DEFAULT_REWARD_WEIGHTS, "r_clip": 3.0}, "blocklist": ["x"],
    }
    assert set(truth) == set(typing.get_type_hints(records.GroundTruth))
    with pytest.raises(ValueError, match="unknown"):
        build_ground_truth(make_record(0, trend="up"), weights={"r_clipp": 3.0})


@pytest.mark.parametrize("trend", ["up", "down", "flat"])
def test_an_older_ground_truth_without_a_spec_scores_identically(trend: str) -> None:
    new = build_ground_truth(make_record(0, trend=trend), blocklist=["spam.example"])
    # The v2 layout the exporter wrote before the spec travelled: top-level blocklist, weights in code.
    old = {k: v for k, v in new.items() if k != "reward_spec"}
    old.update(v=2, blocklist=["spam.example"])
    assert spec_of(old) == new["reward_spec"]
    for answer in ANSWERS:
        assert compute_score("tradelab/NQ", answer, dumps(old)) == compute_score("tradelab/NQ", answer, dumps(new))


def test_the_carried_weights_are_the_ones_scored_with() -> None:
    record = make_record(0, trend="up")
    plain = compute_score("tradelab/NQ", "nonsense", dumps(build_ground_truth(record)))
    harsher_truth = dumps(build_ground_truth(record, weights={"invalid_score": -3.0}))
    harsher = compute_score("tradelab/NQ", "nonsense", harsher_truth)
    assert plain["score"] == DEFAULT_REWARD_WEIGHTS["invalid_score"] and harsher["score"] == -3.0
    good = compute_score("tradelab/NQ", "BUY | 0.8 | up", dumps(build_ground_truth(record)))
    bonus = compute_score("tradelab/NQ", "BUY | 0.8 | up",
                          dumps(build_ground_truth(record, weights={"format_bonus": 0.35})))
    assert bonus["score"] == pytest.approx(good["score"] + 0.25)


def test_a_spec_from_a_newer_tradelab_is_refused() -> None:
    truth = json.loads(dumps(build_ground_truth(make_record(0, trend="up"))))
    truth["reward_spec"]["version"] = REWARD_SPEC_VERSION + 1
    with pytest.raises(ValueError, match="reward_spec.version"):
        compute_score("tradelab/NQ", "BUY | 0.8 | up", truth)
