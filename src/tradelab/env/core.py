"""The one gymnasium futures-trading env: one contract, ATR exits, Apex-style account rules, config-driven reward."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tradelab.core import ACTIONS
from tradelab.core.tradesim import (
    REASON_FLATTEN,
    Costs,
    Exit,
    ExitRules,
    Position,
    can_move_to_be,
    exit_fill,
    manage,
    net_pnl_usd,
    open_position,
    step_bar,
)
from tradelab.env.account import Account
from tradelab.env.fastcopy import FastCopyDict
from tradelab.env.layout import ACCOUNT_FEATURES, ADVISOR_SLOT_SIZE, POSITION_FEATURES, obs_size
from tradelab.env.market_context import build_context
from tradelab.env.tables import FORCED_FLATTEN_TIME, get_tables
from tradelab.errors import ConfigError, DataError
from tradelab.markets import contract_spec

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.core.context import MarketContext
    from tradelab.marketdata.arrays import MarketArrays

SPLITS = ("train", "holdout")
REASON_SESSION_END = "session_end"
REASON_DAILY_LOSS = "daily_loss"
REASON_DRAWDOWN = "drawdown"
REASON_EPISODE_END = "episode_end"
OBS_BOUND = 1e6
"""Finite observation bounds (checkers reject infinite ones); features are clipped far inside them."""
_N_STATE = len(POSITION_FEATURES) + len(ACCOUNT_FEATURES)
_MINUTES_SCALE = 390.0


class FuturesTradingEnv(gym.Env):
    """One futures contract over precomputed 1-minute bars; actions ``tradelab.ACTIONS`` with ``action_masks()``.

    **Timing.** ``step(a)`` is the decision at the close of bar ``t``: entries fill at bar ``t+1``'s open plus
    slippage, management actions move the stop before ``t+1`` trades, then bar ``t+1`` runs through
    :func:`tradelab.core.tradesim.step_bar` (gap/stop/target/trail), then the account rules are checked at its close
    and the env advances to ``t+1``. Observation, mask and ``info`` at ``t`` use bars ``<= t`` only.

    **Rules (config ``env.rules``).** ATR stop, R-multiple target, tick-aware break-even, ATR trail, slippage and
    commissions from the contract spec. At a bar's close: an open position is flattened (market, with slippage) when
    the close is at/after the session's flatten time ("flatten_time": ``flatten_time`` read as minutes before the
    regular close, applied to each session's real close, early closes included) or it is the session's last bar
    ("session_end"), so nothing is held overnight. If the session's realised plus open P&L is at or below ``-daily_loss_limit_usd`` the
    position is flattened ("daily_loss") and entries are masked until the next session. If end-of-bar equity is at or
    below ``peak - trailing_drawdown_usd`` (peak = highest end-of-bar equity, no cap) the position is flattened
    ("drawdown") and the episode terminates. BUY/SELL are allowed only when flat, at a bar closing before
    ``entry_cutoff`` that is not a forced-flatten bar, with a valid ATR, not blocked by the daily loss limit, and when
    the stop's dollar risk plus costs fits in the drawdown buffer. MOVE_TO_BE needs the close beyond the break-even
    level (and a stop it would tighten); ENABLE_TRAIL / DISABLE_TRAIL need the trail off / on.

    **Episodes.** Start at a seeded random bar of the split (``random_start``) or its first bar, or at
    ``reset(options={"start_index": i})``; end after ``episode_bars`` steps or at the split's last bar (truncated;
    an open position is closed at that close as "episode_end"), or on a drawdown breach (terminated). Episodes never
    cross the split end; split "train" is bars ``[0, split_index)``, "holdout" ``[split_index, n)``.

    **Reward (config ``env.reward``).** Per step: the realised P&L of trades closed in that step, net of slippage and
    both commissions, in R-multiples of the initial risk (``kind: r_multiple``) or USD/100 (``pnl_usd``);
    minus ``hold_in_trade_cost`` for each bar a position is held; minus ``invalid_action_penalty`` when a masked
    action is sent (it is executed as HOLD); minus ``drawdown_breach_penalty`` once on a drawdown breach.

    **Observation.** Flat float32: ``window_bars x n_features`` features (oldest first), then
    ``tradelab.env.layout.POSITION_FEATURES``, ``ACCOUNT_FEATURES`` and ``ADVISOR_SLOT_SIZE`` advisor slots at
    :attr:`advisor_slot_slice` (always 0 here; Stage 1 fills them).

    **Info.** ``bar_index`` (the decision bar), ``market_context`` (:class:`tradelab.core.context.MarketContext`),
    ``events`` (list of ``{event, side, price, bar_index, pnl_usd, r_multiple, exit_reason, bars_held}``, event
    "entry" or "exit"), ``invalid_action`` and ``equity_usd``.
    """

    metadata = {"render_modes": []}

    def __init__(self, arrays: MarketArrays, config: TradelabConfig, *, split: str = "train", seed: int = 0) -> None:
        env_cfg, rules = config.env, config.env.rules
        spec = contract_spec(config, arrays.market)
        self.arrays = arrays
        self.market = arrays.market
        self.split = split
        self.costs = Costs.from_spec(spec)
        self.exit_rules = ExitRules(rules.stop_atr, rules.target_r, rules.trail_atr, rules.be_buffer_ticks)
        self._lo, self._hi = _split_bounds(arrays, split)
        self._tab = get_tables(
            arrays, window_bars=env_cfg.window_bars, entry_cutoff=rules.entry_cutoff,
            flatten_time=rules.flatten_time, session_end=spec.session_end,
        )
        self.window_bars = env_cfg.window_bars
        self._n_features = self._tab.n_features
        self._window_size = self.window_bars * self._n_features
        size = obs_size(self.window_bars, self._n_features)
        self.advisor_slot_slice = slice(size - ADVISOR_SLOT_SIZE, size)
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self._obs = np.zeros(size, dtype=np.float32)

        self._episode_bars = env_cfg.episode_bars
        self._random_start = env_cfg.random_start
        self._start_balance = float(rules.starting_balance_usd)
        self._dd_usd = float(rules.trailing_drawdown_usd)
        self._daily_limit = None if rules.daily_loss_limit_usd is None else float(rules.daily_loss_limit_usd)
        self._reward_scale_usd = None if env_cfg.reward.kind == "r_multiple" else 100.0
        self._invalid_penalty = float(env_cfg.reward.invalid_action_penalty)
        self._breach_penalty = float(env_cfg.reward.drawdown_breach_penalty)
        self._hold_cost = float(env_cfg.reward.hold_in_trade_cost)
        self._entry_risk_per_atr_usd = rules.stop_atr * self.costs.point_value
        self._entry_fixed_cost_usd = self.costs.round_turn_usd + 2 * self.costs.slippage_points * self.costs.point_value

        self._pending_seed: int | None = seed
        self._t = self._start = self._lo
        self._end = self._hi - 1
        self._steps = 0
        self._pos: Position | None = None
        self._account = Account(self._start_balance, self._tab.session[self._lo])
        self._mask_key: tuple[bool, ...] = _HOLD_ONLY
        self._done = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"start_index": i}`` fixes the first decision bar (absolute index)."""
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        self._start = self._choose_start(options)
        self._t = self._start
        self._end = min(self._start + self._episode_bars, self._hi - 1)
        self._steps = 0
        self._pos = None
        self._account = Account(self._start_balance, self._tab.session[self._start])
        self._done = False
        self._update_mask()
        return self._observe(), self._info([], False, self._start_balance)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide at the current bar's close, then play the next bar (see the class docstring)."""
        if self._done:
            raise RuntimeError("FuturesTradingEnv.step() called after the episode ended; call reset() first")
        a = int(action)
        invalid = not self._mask_key[a]
        reward = -self._invalid_penalty if invalid else 0.0
        if invalid:
            a = 0
        tab, acct, events = self._tab, self._account, []
        t = self._t
        j = t + 1
        if tab.session[j] != acct.session:
            acct.new_session(tab.session[j])
        if a == 1 or a == 2:
            self._pos = open_position(1 if a == 1 else -1, tab.open[j], tab.atr[t], self.costs, self.exit_rules)
            events.append(self._entry_event(j))
        elif a >= 3:
            manage(self._pos, ACTIONS[a], tab.close[t], tab.atr[t], self.costs, self.exit_rules)
        close_j = tab.close[j]
        pos = self._pos
        if pos is not None:
            reward -= self._hold_cost
            ex = step_bar(pos, tab.open[j], tab.high[j], tab.low[j], close_j, tab.atr[j], self.costs, self.exit_rules)
            if ex is None and tab.forced_exit[j]:
                reason = REASON_FLATTEN if tab.forced_exit[j] == FORCED_FLATTEN_TIME else REASON_SESSION_END
                ex = Exit(exit_fill(pos.side, close_j, self.costs), reason)
            if ex is not None:
                reward += self._close_trade(ex, j, events)
        reward, terminated = self._apply_account_rules(j, reward, events)
        self._t = j
        self._steps += 1
        truncated = not terminated and j >= self._end
        if truncated and self._pos is not None:
            reward += self._close_trade(Exit(exit_fill(self._pos.side, close_j, self.costs), REASON_EPISODE_END),
                                        j, events)
        self._done = terminated or truncated
        self._update_mask()
        equity = acct.balance + self._unrealized(close_j)
        return self._observe(), reward, terminated, truncated, self._info(events, invalid, equity)

    def action_masks(self) -> np.ndarray:
        """Boolean mask over ``tradelab.ACTIONS`` at the current decision bar (True = allowed; HOLD always)."""
        mask = _MASK_ARRAYS.get(self._mask_key)
        if mask is None:
            mask = _MASK_ARRAYS.setdefault(self._mask_key, np.array(self._mask_key, dtype=bool))
        return mask.copy()

    # ------------------------------------------------------------------ public read-only state
    @property
    def bar_index(self) -> int:
        """The current decision bar (absolute index into the market's arrays)."""
        return self._t

    @property
    def position(self) -> Position | None:
        """The open position, or None when flat (do not mutate)."""
        return self._pos

    @property
    def account(self) -> Account:
        """The episode's account state (do not mutate)."""
        return self._account

    @property
    def split_bounds(self) -> tuple[int, int]:
        """``[first, end)`` bar indices of this env's split."""
        return self._lo, self._hi

    def market_context(self) -> MarketContext:
        """The raw market context at the current decision bar (the same dict ``info`` carries)."""
        close = self._tab.close[self._t]
        return self._context(self._account.balance + self._unrealized(close))

    # ------------------------------------------------------------------ internals
    def _choose_start(self, options: dict[str, Any] | None) -> int:
        last_start = self._hi - 2
        if options and options.get("start_index") is not None:
            start = int(options["start_index"])
            if not self._lo <= start <= last_start:
                raise ValueError(
                    f"start_index {start} is outside split {self.split!r}: use {self._lo}..{last_start}"
                )
            return start
        if self._random_start:
            return int(self.np_random.integers(self._lo, last_start + 1))
        return self._lo

    def _apply_account_rules(self, j: int, reward: float, events: list[dict]) -> tuple[float, bool]:
        """Daily loss limit and trailing drawdown at bar ``j``'s close; returns (reward, terminated)."""
        acct = self._account
        close_j = self._tab.close[j]
        unrealized = self._unrealized(close_j)
        limit = self._daily_limit
        if limit is not None and not acct.entries_blocked and acct.daily_pnl + unrealized <= -limit:
            acct.entries_blocked = True
            if self._pos is not None:
                ex = Exit(exit_fill(self._pos.side, close_j, self.costs), REASON_DAILY_LOSS)
                reward += self._close_trade(ex, j, events)
                unrealized = 0.0
        equity = acct.balance + unrealized
        if equity <= acct.peak - self._dd_usd:
            if self._pos is not None:
                ex = Exit(exit_fill(self._pos.side, close_j, self.costs), REASON_DRAWDOWN)
                reward += self._close_trade(ex, j, events)
            return reward - self._breach_penalty, True
        if equity > acct.peak:
            acct.peak = equity
        return reward, False

    def _close_trade(self, ex: Exit, j: int, events: list[dict]) -> float:
        """Book the exit of the open position; returns its reward."""
        pos = self._pos
        pnl = net_pnl_usd(pos.side, pos.entry_price, ex.price, self.costs)
        r_mult = pnl / (pos.initial_risk_points * self.costs.point_value)
        side_name = "long" if pos.side == 1 else "short"
        self._account.record_trade(side_name, pnl, r_mult, ex.reason)
        events.append({
            "event": "exit", "side": side_name, "price": ex.price, "bar_index": j, "pnl_usd": pnl,
            "r_multiple": r_mult, "exit_reason": ex.reason, "bars_held": pos.bars_in_trade,
        })
        self._pos = None
        return r_mult if self._reward_scale_usd is None else pnl / self._reward_scale_usd

    def _entry_event(self, j: int) -> dict[str, Any]:
        pos = self._pos
        return {
            "event": "entry", "side": "long" if pos.side == 1 else "short", "price": pos.entry_price,
            "bar_index": j, "pnl_usd": 0.0, "r_multiple": 0.0, "exit_reason": None, "bars_held": 0,
        }

    def _unrealized(self, close: float) -> float:
        pos = self._pos
        return 0.0 if pos is None else pos.side * (close - pos.entry_price) * self.costs.point_value

    def _update_mask(self) -> None:
        pos, t = self._pos, self._t
        if self._done:
            self._mask_key = _HOLD_ONLY
        elif pos is None:
            acct = self._account
            buffer_usd = acct.balance - (acct.peak - self._dd_usd)
            risk_usd = self._entry_risk_per_atr_usd * self._tab.atr[t] + self._entry_fixed_cost_usd
            enter = self._tab.entry_window[t] and not acct.entries_blocked and risk_usd < buffer_usd
            self._mask_key = _ENTRY if enter else _HOLD_ONLY
        else:
            be = can_move_to_be(pos, self._tab.close[t], self.costs, self.exit_rules)
            self._mask_key = (True, False, False, be, not pos.trail_on, pos.trail_on)

    def _observe(self) -> np.ndarray:
        obs, tab, t = self._obs, self._tab, self._t
        f = self._n_features
        obs[: self._window_size] = tab.features_flat[t * f: t * f + self._window_size]
        obs[self._window_size: self._window_size + _N_STATE] = self._state_values()
        return obs.copy()

    def _state_values(self) -> list[float]:
        tab, t, pos, acct = self._tab, self._t, self._pos, self._account
        close, atr = tab.close[t], tab.atr[t] or 1.0
        dd = self._dd_usd
        if pos is None:
            position = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
            equity = acct.balance
        else:
            side = pos.side
            move = side * (close - pos.entry_price)
            position = [
                float(side), move / pos.initial_risk_points, side * (close - pos.stop) / atr,
                side * (pos.target - close) / atr, float(pos.trail_on), float(pos.be_moved), pos.bars_in_trade / 60.0,
            ]
            equity = acct.balance + move * self.costs.point_value
        return position + [
            (equity - self._start_balance) / dd, (equity - acct.peak + dd) / dd, acct.daily_pnl / dd,
            min(acct.consecutive_losses, 10) / 5.0, acct.win_rate, float(self._mask_key[1]),
            tab.minutes_to_flatten[t] / _MINUTES_SCALE, self._steps / self._episode_bars,
        ]

    def _context(self, equity: float) -> MarketContext:
        return build_context(
            self.market, self._tab, self._t, self._pos, self._account, equity, self._dd_usd,
            self.costs.point_value, self._mask_key,
        )

    def _info(self, events: list[dict], invalid: bool, equity: float) -> dict[str, Any]:
        return FastCopyDict(
            bar_index=self._t, market_context=self._context(equity), events=events, invalid_action=invalid,
            equity_usd=equity,
        )


_HOLD_ONLY = (True, False, False, False, False, False)
_ENTRY = (True, True, True, False, False, False)
_MASK_ARRAYS: dict[tuple[bool, ...], np.ndarray] = {}


def _split_bounds(arrays: MarketArrays, split: str) -> tuple[int, int]:
    n, cut = len(arrays), int(arrays.split_index)
    if split not in SPLITS:
        raise ConfigError(f"env split {split!r} is not one of {SPLITS}; use split='train' or split='holdout'")
    lo, hi = (0, cut) if split == "train" else (cut, n)
    if hi - lo < 2:
        raise DataError(
            f"market {arrays.market}: split {split!r} has {hi - lo} bars (split_index={cut}, n={n}); "
            f"an episode needs at least 2 — generate or import more data, or change env.holdout_fraction"
        )
    return lo, hi
