"""FastCopyDict: its deepcopy is a true deep copy of the env's info trees."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np

from tradelab.env.fastcopy import FastCopyDict


def _info() -> FastCopyDict:
    context = FastCopyDict(close=1.5, position={"side": "long", "stop": None}, recent_trades=[{"pnl": 1.0}],
                           allowed_actions=["HOLD"], nested=[[1, {"a": [2]}]])
    return FastCopyDict(bar_index=3, market_context=context, events=[{"event": "exit", "pnl_usd": -4.5}],
                        terminal_observation=np.arange(3.0))


def test_deepcopy_equal_and_independent() -> None:
    info = _info()
    clone = copy.deepcopy([info])[0]
    assert isinstance(clone, FastCopyDict) and isinstance(clone["market_context"], FastCopyDict)
    assert json.dumps({k: v for k, v in clone.items() if k != "terminal_observation"}) == json.dumps(
        {k: v for k, v in info.items() if k != "terminal_observation"})
    clone["market_context"]["position"]["side"] = "short"
    clone["market_context"]["recent_trades"][0]["pnl"] = 9.0
    clone["market_context"]["nested"][0][1]["a"].append(5)
    clone["events"][0]["pnl_usd"] = 0.0
    clone["terminal_observation"][0] = 7.0
    assert info["market_context"]["position"]["side"] == "long"
    assert info["market_context"]["recent_trades"][0]["pnl"] == 1.0
    assert info["market_context"]["nested"][0][1]["a"] == [2]
    assert info["events"][0]["pnl_usd"] == -4.5 and info["terminal_observation"][0] == 0.0


def test_pickles_as_a_dict() -> None:
    info = _info()
    back = pickle.loads(pickle.dumps(info))
    assert back["market_context"]["recent_trades"] == [{"pnl": 1.0}] and isinstance(back, dict)
