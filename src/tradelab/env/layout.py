"""Observation layout constants, importable without gymnasium (Stage 1 reads them to leave advisor slots alone).

The observation is one flat float32 vector::

    [ window_bars x n_features market features, oldest bar first ]
    [ POSITION_FEATURES ]
    [ ACCOUNT_FEATURES ]
    [ ADVISOR_SLOT_SIZE advisor slots: conf x onehot(6 actions), age_bars, has_advice ]   <- always 0 from the env

The advisor slots are last so ``slice(obs_size - ADVISOR_SLOT_SIZE, obs_size)`` addresses them.
"""

from __future__ import annotations

from tradelab.core import ACTIONS

ADVISOR_SLOT_SIZE = len(ACTIONS) + 2
"""Floats reserved at the end of every observation for the advisor (filled by Stage 1's VecEnv wrapper)."""

POSITION_FEATURES: tuple[str, ...] = (
    "side",                 # +1 long, -1 short, 0 flat
    "unrealized_r",         # open P&L at the close in units of the initial risk
    "stop_distance_atr",    # (close - stop) x side / ATR
    "target_distance_atr",  # (target - close) x side / ATR
    "trail_on",
    "be_moved",
    "bars_in_trade_scaled",  # bars_in_trade / 60
)
ACCOUNT_FEATURES: tuple[str, ...] = (
    "equity_change_dd",          # (equity - starting balance) / trailing drawdown
    "drawdown_buffer_dd",        # USD left before the trailing drawdown / trailing drawdown
    "daily_pnl_dd",              # realised session P&L / trailing drawdown
    "consecutive_losses_scaled",  # min(consecutive losses, 10) / 5
    "win_rate",
    "entry_allowed",             # 1 if BUY/SELL are unmasked
    "minutes_to_flatten_scaled",  # minutes until the flatten time / 390
    "episode_progress",          # bars stepped / episode_bars
)


def obs_size(window_bars: int, n_features: int) -> int:
    """Length of the flat observation vector."""
    return window_bars * n_features + len(POSITION_FEATURES) + len(ACCOUNT_FEATURES) + ADVISOR_SLOT_SIZE


def advisor_slot_slice(window_bars: int, n_features: int) -> slice:
    """Where the advisor slots sit in the observation."""
    size = obs_size(window_bars, n_features)
    return slice(size - ADVISOR_SLOT_SIZE, size)
