"""Baseline and advisor-alone agents."""

from __future__ import annotations

import numpy as np

from tradelab.core import ACTION_IDS
from tradelab.evaluation.agents import AdvisorAgent, BuyAndHoldAgent, FlatAgent, RandomAgent

HOLD, BUY, SELL, TRAIL = ACTION_IDS["HOLD"], ACTION_IDS["BUY"], ACTION_IDS["SELL"], ACTION_IDS["ENABLE_TRAIL"]
ENTRY = np.array([True, True, True, False, False, False])
IN_TRADE = np.array([True, False, False, True, True, False])


def _info(side: str = "flat") -> dict:
    return {"market_context": {"position": {"side": side}, "bar_index": 0}}


def test_flat_and_buy_and_hold() -> None:
    assert FlatAgent().act(None, _info(), ENTRY) == (HOLD, None)
    bnh = BuyAndHoldAgent()
    assert bnh.act(None, _info(), ENTRY) == (BUY, None)
    assert bnh.act(None, _info("long"), IN_TRADE) == (HOLD, None)
    assert bnh.act(None, _info(), np.array([True] + [False] * 5)) == (HOLD, None)  # after the entry cut-off


def test_random_agent_takes_only_allowed_actions_and_is_seeded() -> None:
    agent = RandomAgent(3)
    picks = [agent.act(None, _info("long"), IN_TRADE)[0] for _ in range(200)]
    assert set(picks) == {HOLD, ACTION_IDS["MOVE_TO_BE"], TRAIL}
    again = RandomAgent(3)
    assert [again.act(None, _info("long"), IN_TRADE)[0] for _ in range(200)] == picks
    other = RandomAgent(4)
    assert [other.act(None, _info("long"), IN_TRADE)[0] for _ in range(200)] != picks


def test_advisor_agent_follows_advice_under_the_mask_on_schedule() -> None:
    replies = iter([
        {"action_id": SELL, "confidence": 0.7, "parse_ok": True},
        {"action_id": None, "confidence": None, "parse_ok": False},
        {"action_id": TRAIL, "confidence": 0.9, "parse_ok": True},  # not allowed when flat
        {"action_id": BUY, "confidence": 0.6, "parse_ok": True},
    ])
    asked: list[dict] = []

    def advise(contexts: list[dict]) -> list[dict]:
        asked.extend(contexts)
        return [next(replies)]

    agent = AdvisorAgent(advise, query_interval_bars=2)
    agent.reset()
    actions = [agent.act(None, _info(), ENTRY) for _ in range(5)]
    assert [a for a, _ in actions] == [SELL, HOLD, HOLD, HOLD, HOLD]
    assert [adv is not None for _, adv in actions] == [True, False, True, False, True]
    assert len(asked) == 3
    agent.reset()
    assert agent.act(None, _info(), ENTRY) == (BUY, {"action_id": BUY, "confidence": 0.6, "parse_ok": True})
