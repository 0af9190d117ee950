"""Small stand-ins for the trading env, the market arrays and the advisor, for fast Stage 1 unit tests.

The fake env follows the real env's contract (flat float32 Box observation ending in zeroed advisor slots,
``action_masks()``, ``info["market_context"]``, ``info["events"]``) and trades with ``tradelab.core.tradesim``, so the
wrapper, the recorder and the fusion policy can be tested without the real env.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from tradelab.core import ACTION_IDS, ACTIONS
from tradelab.core.parse import check_allowed, parse_advice
from tradelab.core.tradesim import Costs, ExitRules, net_pnl_usd, open_position, r_multiple, step_bar
from tradelab.stage1.advice import SLOT_SIZE, AdviceResult

COSTS = Costs(tick_size=0.25, tick_value=5.0, point_value=20.0, commission_per_side=2.0, slippage_ticks=1.0)
RULES = ExitRules(stop_atr=1.5, target_r=2.0, trail_atr=1.0, be_buffer_ticks=1.0)
N_FEATURES = 6


@dataclass(frozen=True)
class FakeArrays:
    """The MarketArrays columns the recorder reads."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    atr: np.ndarray
    session_id: np.ndarray
    minute_of_day: np.ndarray
    split_index: int

    def __len__(self) -> int:
        return int(self.close.shape[0])


def make_arrays(n_bars: int = 3000, seed: int = 0) -> FakeArrays:
    """A seeded random-walk market, 390 one-minute bars per session starting 09:30."""
    rng = np.random.default_rng(seed)
    close = 18000.0 + np.cumsum(rng.normal(0.0, 4.0, n_bars))
    open_ = np.concatenate([[close[0]], close[:-1]]) + rng.normal(0.0, 0.5, n_bars)
    high = np.maximum(open_, close) + rng.uniform(0.0, 3.0, n_bars)
    low = np.minimum(open_, close) - rng.uniform(0.0, 3.0, n_bars)
    idx = np.arange(n_bars)
    return FakeArrays(open_, high, low, close, np.full(n_bars, 5.0), idx // 390, 570 + idx % 390,
                      int(n_bars * 0.8))


class FakeTradingEnv(gym.Env):
    """One contract, entries fill at the next open, exits by stop/target (via tradesim), fixed-length episodes."""

    def __init__(self, arrays: FakeArrays, *, episode_bars: int = 60, seed: int = 0) -> None:
        self.arrays = arrays
        self.episode_bars = episode_bars
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (N_FEATURES + SLOT_SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self._rng = np.random.default_rng(seed)
        self.t = 0
        self.start = 0
        self.position = None
        self.consecutive_losses = 0
        self.daily_pnl = 0.0
        self.taken: list[tuple[int, np.ndarray]] = []
        self.decisions: list[tuple[str, int, bool]] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.start = int(self._rng.integers(30, self.arrays.split_index - self.episode_bars - 40))
        self.t = self.start
        self.position = None
        self.consecutive_losses = 0
        self.daily_pnl = 0.0
        return self._obs(), {"market_context": self._context(), "bar_index": self.t}

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(len(ACTIONS), dtype=bool)
        mask[ACTION_IDS["HOLD"]] = True
        if self.position is None:
            mask[ACTION_IDS["BUY"]] = mask[ACTION_IDS["SELL"]] = True
        else:
            mask[ACTION_IDS["ENABLE_TRAIL"]] = not self.position.trail_on
            mask[ACTION_IDS["DISABLE_TRAIL"]] = self.position.trail_on
        return mask

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        name = ACTIONS[int(action)]
        self.taken.append((int(action), self.action_masks()))
        self.decisions.append((name, self.consecutive_losses, self.position is None))
        a = self.arrays
        decision = self.t
        self.t += 1
        closed: list[dict[str, Any]] = []
        if self.position is None and name in ("BUY", "SELL"):
            side = 1 if name == "BUY" else -1
            self.position = open_position(side, float(a.open[self.t]), float(a.atr[decision]), COSTS, RULES)
        elif self.position is not None and name in ("ENABLE_TRAIL", "DISABLE_TRAIL"):
            self.position.trail_on = name == "ENABLE_TRAIL"
        reward = 0.0
        if self.position is not None:
            exit_ = step_bar(self.position, a.open[self.t], a.high[self.t], a.low[self.t], a.close[self.t],
                             a.atr[self.t], COSTS, RULES)
            if exit_ is not None:
                pnl = net_pnl_usd(self.position.side, self.position.entry_price, exit_.price, COSTS)
                r = r_multiple(pnl, self.position, COSTS)
                closed.append({"event": "exit", "pnl_usd": pnl, "r_multiple": r, "exit_reason": exit_.reason,
                               "bars_held": self.position.bars_in_trade})
                self.consecutive_losses = self.consecutive_losses + 1 if pnl <= 0 else 0
                self.daily_pnl += pnl
                reward = r
                self.position = None
        truncated = self.t - self.start >= self.episode_bars
        info = {"market_context": self._context(), "bar_index": self.t, "events": closed}
        return self._obs(), reward, False, truncated, info

    def _obs(self) -> np.ndarray:
        a = self.arrays
        t = self.t
        feats = [(a.close[t] - a.close[t - 5]) / 10.0, (a.close[t] - a.close[t - 30]) / 20.0,
                 0.0 if self.position is None else float(self.position.side),
                 float(self.consecutive_losses), self.daily_pnl / 1000.0, (t - self.start) / self.episode_bars]
        return np.concatenate([np.asarray(feats, np.float32), np.zeros(SLOT_SIZE, np.float32)])

    def _context(self) -> dict[str, Any]:
        a = self.arrays
        t = self.t
        pos = self.position
        position = {"side": "flat", "entry_price": None, "stop": None, "target": None, "trail_on": False,
                    "unrealized_pnl": 0.0, "bars_in_trade": 0}
        if pos is not None:
            position = {"side": pos.side_name, "entry_price": pos.entry_price, "stop": pos.stop,
                        "target": pos.target, "trail_on": pos.trail_on,
                        "unrealized_pnl": pos.side * (a.close[t] - pos.entry_price) * COSTS.point_value,
                        "bars_in_trade": pos.bars_in_trade}
        trend = "up" if a.close[t] > a.close[t - 20] else "down"
        return {
            "market": "NQ", "bar_index": t, "timestamp": f"2024-01-02T10:{t % 60:02d}:00-05:00",
            "close": float(a.close[t]), "atr": float(a.atr[t]), "trend": trend, "momentum": 50.0,
            "volatility": "normal", "vwap_distance_atr": 0.5 if trend == "up" else -0.5,
            "return_5_bars": float(a.close[t] / a.close[t - 5] - 1), "return_30_bars": 0.0,
            "minutes_to_close": 200, "position": position,
            "account": {"balance": 50000.0 + self.daily_pnl, "peak": 50000.0, "drawdown_buffer": 2500.0,
                        "consecutive_losses": self.consecutive_losses, "win_rate": 0.5, "daily_pnl": self.daily_pnl},
            "recent_trades": [], "allowed_actions": [ACTIONS[i] for i in np.flatnonzero(self.action_masks())],
        }


class FakeAdvisor:
    """Answers BUY/SELL with the trend when flat, HOLD in a trade; counts calls and batch sizes."""

    def __init__(self, confidence: float = 0.8) -> None:
        self.confidence = confidence
        self.calls: list[int] = []

    def advise(self, contexts: Sequence[Mapping[str, Any]]) -> list[AdviceResult]:
        self.calls.append(len(contexts))
        out = []
        for ctx in contexts:
            if ctx["position"]["side"] == "flat":
                action = "BUY" if ctx["trend"] == "up" else "SELL"
            else:
                action = "HOLD"
            text = f"{action} | {self.confidence:.2f} | fake"
            messages = [{"role": "system", "content": "fake"}, {"role": "user", "content": str(ctx["bar_index"])}]
            out.append(AdviceResult(messages, text, check_allowed(parse_advice(text), ctx["allowed_actions"])))
        return out

    def adapter_info(self) -> dict[str, str] | None:
        return {"path": "fake", "sha256": "0" * 64}
