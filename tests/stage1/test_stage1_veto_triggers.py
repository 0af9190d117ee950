"""Risk veto rules, query triggers and the slot-preserving VecNormalize."""

from __future__ import annotations

import numpy as np
from stage1_fakes import FakeTradingEnv, make_arrays
from stable_baselines3.common.vec_env import DummyVecEnv

from tradelab.stage1.advice import SLOT_SIZE
from tradelab.stage1.triggers import (
    VETO_DAILY_LOSS, VETO_DRAWDOWN, VETO_LOSS_STREAK, QueryScheduler, TriggerRules, VetoRules, VetoTracker,
)
from tradelab.stage1.vecnorm import SlotPreservingVecNormalize, load_stats, save_stats

RULES = VetoRules(max_consecutive_losses=3, loss_streak_pause_bars=5, min_drawdown_buffer_usd=500.0,
                  daily_loss_stop_usd=800.0)
ENTRY_MASK = np.array([True, True, True, False, False, False])


def _ctx(losses=0, buffer=2500.0, daily=0.0, side="flat") -> dict:
    return {"position": {"side": side}, "account": {"consecutive_losses": losses, "drawdown_buffer": buffer,
                                                    "daily_pnl": daily}}


def test_each_rule_removes_entries_and_keeps_hold() -> None:
    for ctx, reason in ((_ctx(losses=3), VETO_LOSS_STREAK), (_ctx(buffer=499.0), VETO_DRAWDOWN),
                        (_ctx(daily=-800.0), VETO_DAILY_LOSS)):
        mask, reasons = RULES.apply(ENTRY_MASK, ctx)
        assert reasons == [reason]
        assert mask.tolist() == [True, False, False, False, False, False]
    mask, reasons = RULES.apply(ENTRY_MASK, _ctx(losses=2, buffer=500.0, daily=-799.0))
    assert reasons == [] and mask.tolist() == ENTRY_MASK.tolist()
    in_trade = np.array([True, False, False, True, True, False])
    mask, reasons = RULES.apply(in_trade, _ctx(losses=9, side="long"))
    assert reasons == [] and mask.tolist() == in_trade.tolist(), "management of an open trade is never vetoed"


def test_loss_streak_veto_pauses_then_reopens_and_new_loss_restarts_it() -> None:
    tracker = VetoTracker(1, RULES)
    vetoed = [bool(tracker.apply(0, ENTRY_MASK, _ctx(losses=3), episode_start=False)[1]) for _ in range(7)]
    assert vetoed == [True] * 5 + [False] * 2
    assert tracker.apply(0, ENTRY_MASK, _ctx(losses=4), episode_start=False)[1] == [VETO_LOSS_STREAK]


def test_triggers_interval_cooldown_position_entropy_piggyback() -> None:
    rules = TriggerRules(interval_bars=6, on_position_change=True, entropy_threshold=1.0, cooldown_bars=2)
    sched = QueryScheduler(3, rules)
    assert sched.due(["flat"] * 3, [True] * 3) == ["episode_start"] * 3  # bar 1
    sched.mark_queried([0, 1, 2])
    assert sched.due(["long", "flat", "flat"], [False] * 3) == [None] * 3, "cooldown blocks a position change"
    sched.due(["long", "flat", "flat"], [False] * 3)  # bar 3
    assert sched.due(["flat", "flat", "flat"], [False] * 3)[0] == "position_change"  # bar 4
    sched.mark_queried([0])
    sched.set_entropy(np.array([0.0, 0.5, 1.5]))
    due = sched.due(["flat"] * 3, [False] * 3)  # bar 5
    assert due[2] == "entropy" and due[1] == "piggyback" and due[0] is None
    sched.mark_queried([1, 2])
    sched.set_entropy(np.zeros(3))
    assert sched.due(["flat"] * 3, [False] * 3) == [None] * 3  # bar 6
    assert sched.due(["flat"] * 3, [False] * 3) == ["interval", None, None], (
        "bar 7 ticks: env 0 is half an interval (3 bars) past its query, envs 1 and 2 are still in their cooldown"
    )
    sched.mark_queried([0])
    out = [sched.due(["flat"] * 3, [False] * 3) for _ in range(6)]  # bars 8..13; the next tick at 13
    assert out[:5] == [[None] * 3] * 5
    assert out[5] == ["interval"] * 3, "env 0 (6 bars) and envs 1, 2 (8 bars) ask together at the shared tick"


def test_interval_clock_is_shared_so_a_new_episode_rejoins_the_batch() -> None:
    rules = TriggerRules(interval_bars=4, on_position_change=False, entropy_threshold=1.0, cooldown_bars=3)
    sched = QueryScheduler(2, rules)
    asked = []
    for bar in range(1, 16):
        due = sched.due(["flat", "flat"], [bar == 1, bar == 1 or bar == 4])  # env 1 starts a new episode at bar 4
        ids = [i for i, t in enumerate(due) if t is not None]
        sched.mark_queried(ids)
        asked.append((bar, ids))
    ticks = {bar: ids for bar, ids in asked if ids}
    assert ticks == {1: [0, 1], 4: [1], 5: [0], 9: [0, 1], 13: [0, 1]}, (
        "env 1 asked at its new episode (bar 4), skips the tick at bar 5 (1 bar later) and rejoins env 0 at bar 9"
    )


def test_vecnormalize_leaves_slots_raw_and_round_trips(tmp_path) -> None:
    arrays = make_arrays()
    venv = DummyVecEnv([lambda: FakeTradingEnv(arrays, seed=1)])
    vec = SlotPreservingVecNormalize(venv, norm_reward=False)
    vec.reset()
    for _ in range(20):
        vec.step(np.array([0]))
    raw = np.full((2, venv.observation_space.shape[0]), 7.0, dtype=np.float32)
    raw[:, -SLOT_SIZE:] = np.array([0, 0.8, 0, 0, 0, 0, 3, 1], dtype=np.float32)
    out = vec.normalize_obs(raw)
    np.testing.assert_array_equal(out[:, -SLOT_SIZE:], raw[:, -SLOT_SIZE:])
    assert not np.allclose(out[:, :-SLOT_SIZE], raw[:, :-SLOT_SIZE])
    save_stats(vec, tmp_path / "v.npz")
    loaded = load_stats(tmp_path / "v.npz", venv)
    np.testing.assert_array_equal(loaded.normalize_obs(raw), out)
    np.testing.assert_array_equal(load_stats(tmp_path / "v.npz").normalize_obs(raw), out)


def test_filters_skip_single_action_and_positions_without_entries() -> None:
    hold_only = np.array([True, False, False, False, False, False])
    in_trade = np.array([True, False, False, True, True, False])
    masks = np.stack([ENTRY_MASK, hold_only, in_trade])
    plain = TriggerRules(interval_bars=4, on_position_change=False, entropy_threshold=1.0, cooldown_bars=0)
    assert QueryScheduler(3, plain).due(["flat", "flat", "long"], [True] * 3, masks) == ["episode_start"] * 3
    single = TriggerRules(interval_bars=4, on_position_change=False, entropy_threshold=1.0, cooldown_bars=0,
                          skip_single_action=True)
    sched = QueryScheduler(3, single)
    assert sched.due(["flat", "flat", "long"], [True] * 3, masks) == ["episode_start", None, "episode_start"]
    sched.mark_queried([0, 2])
    sched.set_entropy(np.array([0.0, 0.0, 2.0]))
    assert sched.due(["flat", "flat", "long"], [False] * 3, masks) == [None, None, "entropy"], (
        "env 1 is 2 bars past (half an interval) but may not piggyback while it has a single action"
    )
    sched.mark_queried([2])
    sched.set_entropy(np.array([0.0, 2.0, 0.0]))
    assert sched.due(["flat"] * 3, [False] * 3, np.stack([ENTRY_MASK] * 3))[1] == "entropy", (
        "the skipped env asks once its mask offers a choice"
    )
    entries = TriggerRules(interval_bars=4, on_position_change=True, entropy_threshold=1.0, cooldown_bars=0,
                           only_when_entries_allowed=True)
    sched = QueryScheduler(3, entries)
    assert sched.due(["flat", "flat", "long"], [True] * 3, masks) == ["episode_start", None, None]
    assert entries.skips(in_trade) and entries.skips(hold_only) and not entries.skips(ENTRY_MASK)
    assert not entries.skips(None) and not plain.skips(hold_only)


def test_flat_entry_trigger_asks_every_k_bars_while_both_entries_are_allowed() -> None:
    in_trade = np.array([True, False, False, True, True, False])
    buy_vetoed = np.array([True, False, True, False, False, False])
    masks = np.stack([ENTRY_MASK, in_trade, buy_vetoed])

    def asks(every: int) -> dict[int, list[int]]:
        rules = TriggerRules(interval_bars=100, on_position_change=False, entropy_threshold=1.0, cooldown_bars=1,
                             flat_entry_every_bars=every)
        sched = QueryScheduler(3, rules)
        out = {}
        for bar in range(1, 12):
            due = sched.due(["flat", "long", "flat"], [bar == 1] * 3, masks)
            ids = [i for i, t in enumerate(due) if t is not None]
            assert all(due[i] in ("episode_start", "flat_entry") for i in ids)
            sched.mark_queried(ids)
            out[bar] = ids
        return {bar: ids for bar, ids in out.items() if ids}

    assert asks(0) == {1: [0, 1, 2]}, "off: only the episode start asks"
    assert asks(3) == {1: [0, 1, 2], 4: [0], 7: [0], 10: [0]}, (
        "only the env that is flat with BUY and SELL allowed asks, every 3 bars; the others never piggyback "
        "(half an interval is 50 bars)")
