"""Holdout probe scoring: hit rates by move direction, and the balanced rate a constant answer cannot game."""

from __future__ import annotations

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

    monkeypatch.setattr(probe_module, "compute_score", lambda *_: {"score": 0.0})
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
