"""Holdout probe scoring: hit rates by move direction, and the balanced rate a constant answer cannot game."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradelab.core.parse import format_advice
from tradelab.loop.probe import ProbeSet, balanced_hit_rate, score_answers


def _probe(moves: list[float]) -> ProbeSet:
    """A probe whose prompts carry no ground truth the hit rates need; rewards are scored separately."""
    return ProbeSet(bar_indices=list(range(len(moves))), contexts=[], messages=[], ground_truths=[],
                    moves_points=np.asarray(moves, dtype=np.float64), session_ids=np.zeros(len(moves), dtype=np.int64))


def test_a_constant_answer_on_a_drifting_stretch_is_balanced_at_one_half() -> None:
    figures = balanced_hit_rate(up_hits=40, up_n=40, down_hits=0, down_n=80)
    assert figures["balanced_hit_rate"] == pytest.approx(0.5)
    low, high = figures["balanced_hit_rate_ci"]
    assert low < 0.5 < high


def test_telling_up_from_down_raises_the_balanced_rate_above_one_half() -> None:
    figures = balanced_hit_rate(up_hits=35, up_n=40, down_hits=70, down_n=80)
    assert figures["balanced_hit_rate"] == pytest.approx(0.5 * (35 / 40 + 70 / 80))
    assert figures["balanced_hit_rate_ci"][0] > 0.5


def test_the_balanced_interval_narrows_with_more_answers() -> None:
    small = balanced_hit_rate(up_hits=6, up_n=10, down_hits=6, down_n=10)["balanced_hit_rate_ci"]
    large = balanced_hit_rate(up_hits=600, up_n=1000, down_hits=600, down_n=1000)["balanced_hit_rate_ci"]
    assert large[1] - large[0] < small[1] - small[0]
    assert 0.0 <= small[0] and small[1] <= 1.0


def test_one_sided_answers_have_no_balanced_rate() -> None:
    assert balanced_hit_rate(up_hits=3, up_n=5, down_hits=0, down_n=0) == {
        "balanced_hit_rate": None, "balanced_hit_rate_ci": None}


def test_score_answers_splits_hits_by_move(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelab.loop import probe as probe_module

    monkeypatch.setattr(probe_module, "compute_score", lambda *_: {"score": 0.0, "blocked": 0.0})
    moves = [1.0, 2.0, -1.0, -3.0, 0.0, 1.0]
    probe = _probe(moves)
    probe.contexts.extend({"market": "NQ"} for _ in moves)
    probe.ground_truths.extend("{}" for _ in moves)
    answers = [format_advice(a, 0.6, "x") for a in ("BUY", "SELL", "SELL", "SELL", "BUY", "HOLD")]
    figures = score_answers(probe, answers)
    assert figures["hit_rate"] == pytest.approx(3 / 4)  # the flat move and the HOLD count nowhere
    assert figures["hit_rate_up"] == pytest.approx(1 / 2) and figures["hit_rate_down"] == pytest.approx(1.0)
    assert figures["balanced_hit_rate"] == pytest.approx(0.75)
    assert figures["non_hold_share"] == pytest.approx(5 / 6)


def test_the_sides_reward_scores_the_same_actions_at_the_rewards_neutral_confidence() -> None:
    from stage2_factory import make_record

    from tradelab.core.ground_truth import build_ground_truth, dumps

    trends = ["up", "up", "up", "down"]
    probe = ProbeSet(bar_indices=list(range(4)), contexts=[{"market": "NQ"}] * 4, messages=[],
                     ground_truths=[dumps(build_ground_truth(make_record(i, trend=t))) for i, t in enumerate(trends)],
                     moves_points=np.array([5.0, 4.0, 3.0, -6.0]), session_ids=np.arange(4))
    sides = ["BUY", "BUY", "SELL", "SELL"]
    sure = score_answers(probe, [format_advice(a, 0.93, "sure") for a in sides])
    bare = score_answers(probe, sides)  # no confidence: the reward scores the neutral one
    neutral = score_answers(probe, [format_advice(a, 0.5, "neutral") for a in sides])
    assert sure["sides_reward"] == pytest.approx(bare["holdout_reward"])
    assert neutral["holdout_reward"] == pytest.approx(bare["holdout_reward"])  # neutral_confidence is 0.5
    # The two differ by the calibration term alone: the weight times the change in each Brier term.
    from tradelab.core.records import spec_of
    from tradelab.core.reward import compute_score

    calibration = [compute_score("tradelab/NQ", format_advice(a, 0.93, "sure"), truth)["calibration"]
                   - compute_score("tradelab/NQ", a, truth)["calibration"]
                   for a, truth in zip(sides, probe.ground_truths)]
    assert sure["holdout_reward"] != pytest.approx(sure["sides_reward"])
    weight = spec_of(json.loads(probe.ground_truths[0]))["weights"]["calibration_weight"]
    assert sure["holdout_reward"] - sure["sides_reward"] == pytest.approx(weight * np.mean(calibration))
    assert sure["hit_rate"] == bare["hit_rate"] == pytest.approx(0.75)


def test_an_unparsed_answer_keeps_its_own_reward_in_the_sides_reward() -> None:
    from stage2_factory import make_record

    from tradelab.core.ground_truth import build_ground_truth, dumps

    probe = ProbeSet(bar_indices=[0], contexts=[{"market": "NQ"}], messages=[],
                     ground_truths=[dumps(build_ground_truth(make_record(0)))], moves_points=np.array([1.0]),
                     session_ids=np.zeros(1, dtype=np.int64))
    figures = score_answers(probe, ["no idea"])
    assert figures["parse_rate"] == 0.0 and figures["sides_reward"] == figures["holdout_reward"] < 0
