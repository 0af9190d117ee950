"""Hindsight labels for adapter refinement: scored actions, target answer, advantage weight."""

from __future__ import annotations

import pytest
from stage1_fakes import COSTS, RULES

from tradelab.core.parse import parse_advice
from tradelab.stage1.refine import MAX_WEIGHT_R, hindsight_example, score_actions


def _record(advised: str | None, parse_ok: bool = True) -> dict:
    context = {"market": "NQ", "close": 100.0, "trend": "up", "momentum": 61.0, "vwap_distance_atr": 0.7,
               "volatility": "normal", "position": {"side": "flat"}}
    return {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "advice": {"action": advised, "parse_ok": parse_ok, "error": None if parse_ok else "no_action"},
        "allowed_actions": ["HOLD", "BUY", "SELL"],
        "position": {"side": "flat", "entry_price": None, "stop": None, "target": None, "trail_on": False,
                     "unrealized_pnl": 0.0, "bars_in_trade": 0},
        "market_context": context,
        # a long entry at 100.25 reaches its 103.25 target in bar 3; a short from 99.75 is stopped out in bar 1
        "forward": {"horizon_bars": 4, "open": [100.0, 101.0, 103.0, 104.0], "high": [101.5, 102.0, 107.0, 105.0],
                    "low": [99.5, 100.0, 102.5, 103.0], "close": [101.0, 102.0, 104.0, 104.0], "atr": 1.0},
        "contract": COSTS.to_dict(),
        "rules": {**RULES.to_dict(), "flatten_after_bars": None},
        "outcome": {"pnl": 0.0},
    }


def test_scores_replay_every_allowed_action() -> None:
    scores = score_actions(_record("HOLD"))
    assert scores["HOLD"] == 0.0
    assert scores["BUY"] == pytest.approx(56.0 / 30.0)
    assert scores["SELL"] < -1.0


def test_target_is_hindsight_best_with_advantage_weight() -> None:
    messages, target, weight = hindsight_example(_record("HOLD"), min_weight=0.05)
    advice = parse_advice(target)
    assert advice.action == "BUY" and 0.5 < advice.confidence <= 0.95
    assert "trend up" in advice.reason and "103" not in target, "the reason uses only decision-time values"
    assert weight == pytest.approx(56.0 / 30.0)
    assert messages[1]["content"] == "u"
    assert hindsight_example(_record("SELL"), 0.05)[2] == MAX_WEIGHT_R
    assert hindsight_example(_record(None, parse_ok=False), 0.05)[2] == MAX_WEIGHT_R


def test_correct_advice_gets_the_floor_weight_or_is_dropped() -> None:
    assert hindsight_example(_record("BUY"), min_weight=0.05)[2] == 0.05
    assert hindsight_example(_record("BUY"), min_weight=0.0) is None
    empty = _record("BUY")
    empty["forward"] = {"horizon_bars": 0, "open": [], "high": [], "low": [], "close": [], "atr": 1.0}
    assert hindsight_example(empty, 0.05) is None


def test_each_target_action_carries_the_same_total_weight() -> None:
    """A stretch of bars that mostly favours SELL must not teach one constant answer."""
    from tradelab.stage1.refine import balance_by_action

    actions = ["SELL"] * 6 + ["BUY"] * 2 + ["HOLD"]
    weights = [1.0, 2.0, 1.0, 1.0, 0.5, 0.5, 3.0, 1.0, 0.9]
    balanced = balance_by_action(actions, weights)
    totals = {a: sum(w for b, w in zip(actions, balanced) if b == a) for a in set(actions)}
    assert sum(balanced) == pytest.approx(sum(weights))
    assert max(totals.values()) == pytest.approx(min(totals.values()))
    # Within an action the advantage ordering is kept.
    assert balanced[1] == pytest.approx(2 * balanced[0]) and balanced[6] == pytest.approx(3 * balanced[7])
    assert balance_by_action([], []) == []


def test_sides_balances_buy_against_sell_and_leaves_the_other_targets_alone() -> None:
    """The training window's drift names one side more often; HOLD's count is the market's, not a drift."""
    from tradelab.stage1.refine import SIDES, balance_by_action

    actions = ["BUY"] * 3 + ["SELL"] + ["HOLD"] * 2
    balanced = balance_by_action(actions, [1.0] * 6, among=SIDES)
    assert balanced == pytest.approx([2 / 3] * 3 + [2.0] + [1.0, 1.0])
    # One side alone has nothing to balance against.
    assert balance_by_action(["BUY", "HOLD"], [1.0, 0.5], among=SIDES) == [1.0, 0.5]


def test_sides_weights_reach_the_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from tradelab.advisor import train
    from tradelab.config import load_config
    from tradelab.core.parse import format_advice
    from tradelab.stage1 import refine

    targets = iter(["BUY", "BUY", "BUY", "SELL", "HOLD"])
    monkeypatch.setattr(refine, "hindsight_example",
                        lambda record, floor: ([], format_advice(next(targets), 0.6, "why"), 2.5))
    seen: list[list] = []
    monkeypatch.setattr(train, "train_adapter", lambda base, examples, *a, **k: seen.append(list(examples)))
    monkeypatch.setattr(train, "read_training_summary", lambda _: {})
    config = load_config(overrides={"stage1.refinement.weights": "sides", "stage1.refinement.decisions": "all"})
    refine.refine_adapter([_record("SELL")] * 5, config, base_dir=tmp_path, init_adapter=tmp_path, out_dir=tmp_path,
                          seed=0, epochs=1)
    # Uniform first (the advantage 2.5 is dropped), then BUY's three share SELL's one total.
    assert [e.weight for e in seen[0]] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0])


def _in_trade(record: dict) -> dict:
    return {**record, "position": {**record["position"], "side": "long", "entry_price": 100.0, "stop": 98.0,
                                   "target": 103.0},
            "allowed_actions": ["HOLD", "MOVE_TO_BE", "ENABLE_TRAIL"]}


@pytest.mark.parametrize("decisions, trained", [("all", 3), ("entries", 2)])
def test_an_entries_only_refinement_drops_in_trade_records(monkeypatch: pytest.MonkeyPatch, tmp_path, decisions: str,
                                                           trained: int) -> None:
    from tradelab.advisor import train
    from tradelab.config import load_config
    from tradelab.core.tradesim import is_entry_decision
    from tradelab.stage1.refine import refine_adapter

    records = [_record("SELL"), _in_trade(_record("HOLD")), _record(None, parse_ok=False)]
    assert [is_entry_decision(r) for r in records] == [True, False, True]
    seen: list[list] = []
    monkeypatch.setattr(train, "train_adapter", lambda base, examples, *a, **k: seen.append(list(examples)))
    monkeypatch.setattr(train, "read_training_summary", lambda _: {})
    config = load_config(overrides={"stage1.refinement.decisions": decisions, "stage1.refinement.min_weight": 0.05})
    summary = refine_adapter(records, config, base_dir=tmp_path, init_adapter=tmp_path, out_dir=tmp_path, seed=0,
                             epochs=1)
    assert summary["examples"] == trained == len(seen[0])


@pytest.mark.parametrize("weights", ["advantage", "uniform"])
def test_uniform_weights_skip_the_advantage_and_the_balancing(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                              weights: str) -> None:
    from tradelab.advisor import train
    from tradelab.config import load_config
    from tradelab.stage1.refine import refine_adapter

    records = [_record("SELL"), _record("BUY"), _record(None, parse_ok=False)]
    seen: list[list] = []
    monkeypatch.setattr(train, "train_adapter", lambda base, examples, *a, **k: seen.append(list(examples)))
    monkeypatch.setattr(train, "read_training_summary", lambda _: {})
    config = load_config(overrides={"stage1.refinement.weights": weights, "stage1.refinement.min_weight": 0.05})
    refine_adapter(records, config, base_dir=tmp_path, init_adapter=tmp_path, out_dir=tmp_path, seed=0, epochs=1)
    got = [e.weight for e in seen[0]]
    if weights == "uniform":
        assert got == [1.0, 1.0, 1.0]
    else:  # all three targets are BUY: the correct advice keeps the floor, the others their advantage
        assert got[1] == pytest.approx(0.05) and got[0] > 1.0 and got[2] > 1.0
