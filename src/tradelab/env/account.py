"""Account state of one episode: balance, Apex trailing peak, session P&L and trade statistics."""

from __future__ import annotations

from collections import deque

RECENT_TRADES = 5
"""Closed trades kept for the market context's ``recent_trades``."""


class Account:
    """Mutable per-episode account (plain Python floats for speed).

    Attributes:
        starting_balance_usd: Balance at reset.
        balance: Realised balance, USD.
        peak: Highest end-of-bar equity so far, USD (the trailing drawdown reference).
        daily_pnl: Realised P&L of the current session, USD.
        session: Current session id.
        entries_blocked: The daily loss limit was hit this session.
        consecutive_losses: Losing trades in a row (a trade with pnl <= 0 counts as a loss).
        wins, trades: Winning and total closed trades this episode.
        recent_trades: The last few closed trades as context dicts.
    """

    __slots__ = (
        "starting_balance_usd", "balance", "peak", "daily_pnl", "session", "entries_blocked",
        "consecutive_losses", "wins", "trades", "recent_trades",
    )

    def __init__(self, starting_balance_usd: float, session: int) -> None:
        self.starting_balance_usd = starting_balance_usd
        self.balance = starting_balance_usd
        self.peak = starting_balance_usd
        self.daily_pnl = 0.0
        self.session = session
        self.entries_blocked = False
        self.consecutive_losses = 0
        self.wins = 0
        self.trades = 0
        self.recent_trades: deque[dict] = deque(maxlen=RECENT_TRADES)

    def new_session(self, session: int) -> None:
        """Reset the session P&L and the daily-loss block."""
        self.session = session
        self.daily_pnl = 0.0
        self.entries_blocked = False

    def record_trade(self, side_name: str, pnl_usd: float, r_multiple: float, exit_reason: str) -> None:
        """Book a closed trade (``pnl_usd`` net of commissions)."""
        self.balance += pnl_usd
        self.daily_pnl += pnl_usd
        self.trades += 1
        if pnl_usd > 0.0:
            self.wins += 1
            self.consecutive_losses = 0
        else:
            self.consecutive_losses += 1
        self.recent_trades.append(
            {"side": side_name, "pnl": pnl_usd, "r_multiple": r_multiple, "exit_reason": exit_reason}
        )

    @property
    def win_rate(self) -> float:
        """Winning fraction of closed trades; 0.0 before the first trade."""
        return self.wins / self.trades if self.trades else 0.0
