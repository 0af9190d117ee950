"""Advisor metrics on hand-built advice and a known close series."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.core import ACTION_IDS
from tradelab.evaluation.advisor_metrics import AdviceRecord, advice_record, advisor_metrics, calibration_table

B, S, H = ACTION_IDS["BUY"], ACTION_IDS["SELL"], ACTION_IDS["HOLD"]
# close[t + 2] vs close[t]: t=0 up, t=1 down, t=2 up, t=3 down, t=4 flat
CLOSE = np.array([100.0, 101.0, 102.0, 100.0, 103.0, 99.0, 103.0, 103.0])


def _rec(bar: int, action: int | None, conf: float | None, *, allowed: bool = True, taken: int = H) -> AdviceRecord:
    return AdviceRecord(bar, action, conf, action is not None, allowed, taken)


RECORDS = [
    _rec(0, B, 0.9, taken=B),     # up move, BUY: hit
    _rec(1, B, 0.6),              # down move, BUY: miss
    _rec(2, S, 0.7, taken=S),     # up move, SELL: miss
    _rec(3, S, 0.8, allowed=False),  # down move, SELL: hit, vetoed
    _rec(4, H, 0.5, taken=H),     # HOLD: not directional
    _rec(5, None, None),          # unparseable
    _rec(6, B, 0.9),              # no full forward window: not scored
]


def test_advisor_metrics_hand_computed() -> None:
    got = advisor_metrics(RECORDS, CLOSE, horizon_bars=2, has_policy=True)
    assert got["advice_count"] == 7
    assert got["parse_rate"] == pytest.approx(6 / 7)
    assert got["agreement_with_ppo"] == pytest.approx(3 / 6)  # bars 0, 2, 4 agree among the 6 parsed
    assert got["veto_rate"] == pytest.approx(1 / 6)
    assert got["directional_advice"] == 4
    assert got["hit_rate"] == pytest.approx(2 / 4)
    assert (got["up_moves"], got["down_moves"]) == (2, 2)
    assert got["hit_rate_up"] == pytest.approx(1 / 2)    # bar 0 BUY, bar 2 SELL
    assert got["hit_rate_down"] == pytest.approx(1 / 2)  # bar 1 BUY, bar 3 SELL
    brier = ((0.9 - 1) ** 2 + (0.6 - 0) ** 2 + (0.7 - 0) ** 2 + (0.8 - 1) ** 2) / 4
    assert got["brier_score"] == pytest.approx(brier)


def test_advisor_alone_has_no_agreement_and_empty_input_is_none() -> None:
    assert advisor_metrics(RECORDS, CLOSE, horizon_bars=2, has_policy=False)["agreement_with_ppo"] is None
    empty = advisor_metrics([], CLOSE, horizon_bars=2, has_policy=True)
    assert empty["advice_count"] == 0
    assert all(empty[k] is None for k in ("parse_rate", "hit_rate", "brier_score", "veto_rate"))


def test_up_and_down_hit_rates_are_separate() -> None:
    always_buy = [_rec(t, B, 0.5) for t in range(4)]
    got = advisor_metrics(always_buy, CLOSE, horizon_bars=2, has_policy=False)
    assert got["hit_rate_up"] == 1.0 and got["hit_rate_down"] == 0.0 and got["hit_rate"] == 0.5


def test_calibration_table_bins() -> None:
    table = calibration_table(RECORDS, CLOSE, horizon_bars=2, bins=2)
    assert [row["count"] for row in table] == [0, 4]
    assert table[1]["mean_confidence"] == pytest.approx((0.9 + 0.6 + 0.7 + 0.8) / 4)
    assert table[1]["hit_frequency"] == pytest.approx(0.5)
    assert table[0]["mean_confidence"] is None


def test_advice_record_reads_the_mask() -> None:
    mask = np.array([True, False, False, False, False, False])
    rec = advice_record(7, {"action_id": B, "confidence": 0.8, "parse_ok": True}, mask, H)
    assert rec == AdviceRecord(7, B, 0.8, True, False, H)
    vetoed = advice_record(7, {"action_id": H, "confidence": 0.8, "parse_ok": True, "error": "disallowed_action"},
                           mask, H)
    assert vetoed.parse_ok and not vetoed.allowed
    bad = advice_record(7, {"action_id": None, "confidence": None, "parse_ok": False}, mask, H)
    assert not bad.parse_ok and bad.action_id is None and not bad.allowed
