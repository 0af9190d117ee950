"""Experience buffer: forward windows, outcome attachment on a hand-checked window, batching, append-only file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from stage1_fakes import COSTS, RULES, FakeAdvisor, FakeTradingEnv, make_arrays

from tradelab.core.replay import simulate_action
from tradelab.stage1.advice import closed_trades
from tradelab.stage1.experience import ExperienceRecorder, ForwardSlicer
from tradelab.stage1.wiring import advice_vec_env

SIX_ACTIONS = ["HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL"]


class _Arrays:
    """A hand-made market: decision at bar 2, long entry fills at bar 3's open 100, target hit at bar 5."""

    def __init__(self) -> None:
        self.open = np.array([100, 100, 100, 100.0, 101, 103, 104, 104, 104, 104])
        self.high = np.array([101, 101, 101, 101.5, 102, 107, 105, 105, 105, 105])
        self.low = np.array([99, 99, 99, 99.5, 100, 102.5, 103, 103, 103, 103])
        self.close = np.array([100, 100, 100, 101.0, 102, 104, 104, 104, 104, 104])
        self.atr = np.full(10, 1.0)
        self.session_id = np.zeros(10, dtype=int)
        self.minute_of_day = np.arange(10) + 600


def _context(bar_index: int, side: str = "flat") -> dict:
    return {
        "market": "NQ", "bar_index": bar_index, "timestamp": "2024-01-02T10:02:00-05:00", "close": 100.0,
        "atr": 1.0, "trend": "up", "momentum": 55.0, "volatility": "normal", "vwap_distance_atr": 0.4,
        "return_5_bars": 0.0, "return_30_bars": 0.0, "minutes_to_close": 300,
        "position": {"side": side, "entry_price": None, "stop": None, "target": None, "trail_on": False,
                     "unrealized_pnl": 0.0, "bars_in_trade": 0},
        "account": {"balance": 50000.0, "peak": 50000.0, "drawdown_buffer": 2500.0, "consecutive_losses": 0,
                    "win_rate": 0.0, "daily_pnl": 0.0},
        "recent_trades": [], "allowed_actions": ["HOLD", "BUY", "SELL"],
    }


def _recorder(tmp_path, *, end_index=10, horizon=4, flush_every=1, forced=None) -> ExperienceRecorder:
    slicer = ForwardSlicer(_Arrays(), end_index, horizon, forced or [0] * 10)
    return ExperienceRecorder(tmp_path / "exp.jsonl", market="NQ", run_id="r1", slicer=slicer,
                              contract=COSTS.to_dict(), rules={**RULES.to_dict(), "flatten_time": "15:55"},
                              flush_every=flush_every, recent_maxlen=100)


def _open(rec: ExperienceRecorder, bar: int = 2, side: str = "flat") -> str:
    return rec.open_record(0, context=_context(bar, side), messages=[{"role": "user", "content": "x"}],
                           response="BUY | 0.8 | up", advice={"action": "BUY", "action_id": 1, "confidence": 0.8,
                                                              "reason": "up", "parse_ok": True, "error": None},
                           adapter={"path": "a", "sha256": "b"})


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_forward_window_is_next_bars_clipped_at_split_end(tmp_path) -> None:
    slicer = ForwardSlicer(_Arrays(), 6, 4, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    fwd = slicer.forward(2)
    assert fwd["open"] == [100.0, 101.0, 103.0] and fwd["horizon_bars"] == 3
    assert fwd["close"] == [101.0, 102.0, 104.0] and fwd["atr"] == 1.0
    assert slicer.flatten_after_bars(2) == 2
    assert slicer.forward(5)["open"] == [] and slicer.flatten_after_bars(5) is None


def test_entry_outcome_is_the_closed_trade_matching_a_hand_computed_window(tmp_path) -> None:
    rec = _recorder(tmp_path)
    _open(rec)
    rec.on_actions(np.array([1]))
    # Long at bar 3's open 100 + 1 tick slippage = 100.25; stop 1.5 ATR -> 98.75; target 2R = 103.25, hit in bar 5.
    pnl = (103.25 - 100.25) * COSTS.point_value - 2 * COSTS.commission_per_side
    rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="long", unrealized_after=15.0)
    rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="long", unrealized_after=35.0)
    assert rec.pending_count == 1
    trade = {"pnl": pnl, "r_multiple": pnl / (1.5 * COSTS.point_value), "exit_reason": "target", "bars_held": 3}
    rec.on_step(0, reward=1.9, done=False, closed_trades=[trade], side_after="flat", unrealized_after=0.0)
    assert rec.pending_count == 0
    (record,) = _read(tmp_path / "exp.jsonl")
    assert record["outcome"] == {"pnl": pytest.approx(56.0), "r_multiple": pytest.approx(56.0 / 30.0),
                                 "exit_reason": "target", "bars_held": 3, "reward": pytest.approx(1.9)}
    assert record["action_taken"] == {"action": "BUY", "action_id": 1}
    sim = simulate_action("BUY", None, record["forward"], record["forward"]["atr"], COSTS, RULES)
    assert sim.exit_reason == "target" and sim.pnl_usd == pytest.approx(record["outcome"]["pnl"])


def test_no_trade_resolves_at_horizon_and_episode_end_resolves_early(tmp_path) -> None:
    rec = _recorder(tmp_path, horizon=3)
    _open(rec)
    rec.on_actions(np.array([0]))
    for _ in range(2):
        rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="flat", unrealized_after=0.0)
    assert rec.pending_count == 1
    rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="flat", unrealized_after=0.0)
    _open(rec, bar=4)
    rec.on_actions(np.array([0]))
    rec.on_step(0, reward=-0.1, done=True, closed_trades=[], side_after="flat", unrealized_after=0.0)
    records = _read(tmp_path / "exp.jsonl")
    assert [r["outcome"]["exit_reason"] for r in records] == ["no_trade", "no_trade"]
    assert records[0]["outcome"]["pnl"] == 0.0 and records[1]["outcome"]["reward"] == pytest.approx(-0.1)


def test_batches_are_appended_and_close_writes_pending_with_null_outcome(tmp_path) -> None:
    path = tmp_path / "exp.jsonl"
    path.write_text('{"earlier": true}\n')
    rec = _recorder(tmp_path, horizon=1, flush_every=3)
    for _ in range(2):
        _open(rec)
        rec.on_actions(np.array([0]))
        rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="flat", unrealized_after=0.0)
    assert len(path.read_text().splitlines()) == 1, "two resolved records stay buffered below flush_every"
    _open(rec)
    assert rec.close() == 3
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": true}'
    records = [json.loads(x) for x in lines[1:]]
    assert [r["outcome"] is None for r in records] == [False, False, True]
    assert len({r["id"] for r in records}) == 3


def test_records_carry_every_section_6_field(tmp_path) -> None:
    rec = _recorder(tmp_path, horizon=1)
    _open(rec)
    rec.on_actions(np.array([0]))
    rec.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="flat", unrealized_after=0.0)
    (record,) = _read(tmp_path / "exp.jsonl")
    assert set(record) == {
        "schema_version", "id", "market", "run_id", "bar_index", "timestamp", "prompt", "response", "advice",
        "action_taken", "allowed_actions", "position", "account", "market_context", "forward", "contract", "rules",
        "outcome", "adapter",
    }
    assert set(record["forward"]) == {"horizon_bars", "open", "high", "low", "close", "atr", "atr_path"}
    assert set(record["contract"]) == {"tick_size", "tick_value", "point_value", "commission_per_side",
                                       "slippage_ticks"}
    assert {"stop_atr", "target_r", "trail_atr", "be_buffer_ticks", "flatten_time", "flatten_after_bars"} <= set(
        record["rules"])
    assert set(record["outcome"]) == {"pnl", "r_multiple", "exit_reason", "bars_held", "reward"}


def test_wrapper_records_resolve_against_the_env_trades(tmp_path, config) -> None:
    arrays = make_arrays()
    slicer = ForwardSlicer(arrays, arrays.split_index, 20, [0] * len(arrays))
    rec = ExperienceRecorder(tmp_path / "exp.jsonl", market="NQ", run_id="r2", slicer=slicer,
                             contract=COSTS.to_dict(), rules=RULES.to_dict(), flush_every=8, recent_maxlen=50)
    advisor = FakeAdvisor()
    env = advice_vec_env([lambda i=i: FakeTradingEnv(arrays, seed=i) for i in range(3)], config.stage1,
                         source=advisor, recorder=rec, interval_bars=4)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(200):
        masks = np.stack(env.env_method("action_masks"))
        env.step(np.array([rng.choice(np.flatnonzero(m[:3])) for m in masks]))  # no trail: replay stays exact
    rec.close()
    records = _read(tmp_path / "exp.jsonl")
    assert len(records) == env.stats.queries == sum(advisor.calls)
    assert len(advisor.calls) == env.stats.batches and max(advisor.calls) > 1
    resolved = [r for r in records if r["outcome"] is not None]
    trades = [r for r in resolved if r["outcome"]["exit_reason"] not in ("no_trade", "episode_end")]
    assert len(resolved) >= 0.8 * len(records) and trades
    for r in trades:
        assert r["action_taken"]["action"] in ("BUY", "SELL") or r["position"]["side"] != "flat"
        sim = simulate_action(r["action_taken"]["action"], r["position"] if r["position"]["side"] != "flat" else None,
                              r["forward"], r["forward"]["atr"], COSTS, RULES, decision_close=r["market_context"]["close"])
        if r["position"]["side"] == "flat" and r["outcome"]["bars_held"] < r["forward"]["horizon_bars"]:
            assert sim.pnl_usd == pytest.approx(r["outcome"]["pnl"]), "env and replay agree on a fresh entry"


def test_closed_trades_reads_exit_events_only() -> None:
    info = {"events": [
        {"event": "entry", "pnl_usd": 0.0, "r_multiple": 0.0, "exit_reason": None, "bars_held": 0},
        {"event": "exit", "pnl_usd": -30.0, "r_multiple": -1.0, "exit_reason": "stop", "bars_held": 4},
    ]}
    assert closed_trades(info) == [{"pnl": -30.0, "r_multiple": -1.0, "exit_reason": "stop", "bars_held": 4}]
    assert closed_trades({}) == []


def test_a_new_run_starts_its_refinement_window_with_the_files_latest_resolved_records(tmp_path) -> None:
    earlier = _recorder(tmp_path, horizon=1)
    for bar in (2, 3, 4):
        _open(earlier, bar=bar)
        earlier.on_actions(np.array([0]))
        earlier.on_step(0, reward=0.0, done=False, closed_trades=[], side_after="flat", unrealized_after=0.0)
    _open(earlier, bar=5)
    earlier.close()  # the pending record goes to the file with outcome null
    path = tmp_path / "exp.jsonl"
    with path.open("a") as fh:
        fh.write('{"damaged": \n')
    written = [json.loads(line) for line in path.read_text().splitlines()[:4]]

    later = _recorder(tmp_path)
    assert later.preload_history() == {"records": 3, "malformed": 1}
    assert [r["bar_index"] for r in later.recent] == [r["bar_index"] for r in written[:3]] == [2, 3, 4]

    window_of_two = ExperienceRecorder(path, market="NQ", run_id="r2", slicer=later.slicer, contract=later.contract,
                                       rules=later.rules, flush_every=1, recent_maxlen=2)
    assert window_of_two.preload_history() == {"records": 0, "malformed": 1}, "the tail: a null outcome, a bad line"
    assert len(path.read_text().splitlines()) == 5, "reading the history never rewrites the file"
