"""Counterfactual replay: what taking an action at a decision bar would have done over a recorded forward window.

The GRPO reward and Stage 1's hindsight labels score any allowed action with :func:`simulate_action`, using the
env's own mechanics from :mod:`tradelab.core.tradesim` (same fills, exits, costs and forced flatten), so "one reward,
one env" holds. Pure Python: it imports under a bare interpreter with only numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from tradelab.core.tradesim import (
    ENTRY_ACTIONS,
    LONG,
    MANAGEMENT_ACTIONS,
    REASON_BREAKEVEN,
    REASON_FLATTEN,
    REASON_HORIZON,
    REASON_NO_TRADE,
    REASON_STOP,
    REASON_TRAIL,
    SHORT,
    Costs,
    Exit,
    ExitRules,
    Position,
    exit_fill,
    manage,
    net_pnl_usd,
    open_position,
    r_multiple,
    step_bar,
)


class SimResult(NamedTuple):
    """Outcome of :func:`simulate_action` over a forward window."""

    pnl_usd: float
    r_multiple: float
    exit_reason: str
    bars_held: int



def bars_to_flatten(
    timestamp: str, flatten_time: str, session_end: str | None = None, *, bar_minutes: int = 1
) -> int:
    """Forward bars until the env's forced flatten, for a decision at the bar labelled ``timestamp``.

    The env closes a position at the close of the first bar that ends at or after ``flatten_time`` (or at the
    session's last bar, which ends at ``session_end``). Pass the result as ``simulate_action(flatten_after_bars=)``.
    Assumes contiguous bars of ``bar_minutes``; a decision already at or past the flatten time gives 1.

    Args:
        timestamp: ISO-8601 bar open time in exchange-local (New York) time, e.g. ``2024-03-11T15:40:00-04:00``.
        flatten_time: ``HH:MM`` (``env.rules.flatten_time``).
        session_end: ``HH:MM`` session close, if it may come before the flatten time.
        bar_minutes: Bar length.
    """
    decision_close = int(timestamp[11:13]) * 60 + int(timestamp[14:16]) + bar_minutes
    limit = _hhmm(flatten_time) if session_end is None else min(_hhmm(flatten_time), _hhmm(session_end))
    return max((limit - decision_close) // bar_minutes, 1)


def _hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


_SIDE_NAMES = {"long": LONG, "short": SHORT, "buy": LONG, "sell": SHORT, 1: LONG, -1: SHORT}


def position_from_dict(data: Mapping[str, Any] | None, rules: ExitRules) -> Position | None:
    """Rebuild a position from its dict form (``Position.to_dict`` or an experience record's ``position``).

    ``initial_risk_points`` defaults to ``|target - entry| / target_r`` (the target never moves) and ``be_moved`` to
    whether the stop is at or beyond the entry. A ``side`` of "flat"/0/None (or ``data`` None) means no position.

    Raises:
        ValueError: ``side`` is not recognised or a price is missing.
    """
    if data is None or data.get("side") in ("flat", 0, None):
        return None
    side_raw = data["side"]
    side = _SIDE_NAMES.get(side_raw.lower() if isinstance(side_raw, str) else side_raw)
    if side is None:
        raise ValueError(f"position side must be 'long', 'short', 'flat', +1 or -1, got {side_raw!r}")
    entry, stop, target = (data.get(k) for k in ("entry_price", "stop", "target"))
    if entry is None or stop is None or target is None:
        raise ValueError(f"an open position needs entry_price, stop and target, got {dict(data)!r}")
    entry, stop, target = float(entry), float(stop), float(target)
    risk = data.get("initial_risk_points")
    risk = float(risk) if risk is not None else abs(target - entry) / rules.target_r
    be_moved = data.get("be_moved")
    be_moved = bool(be_moved) if be_moved is not None else side * (stop - entry) >= 0.0
    trail_on = bool(data.get("trail_on", False))
    kind = REASON_TRAIL if trail_on and be_moved else REASON_BREAKEVEN if be_moved else REASON_STOP
    return Position(side, entry, stop, target, risk, trail_on, be_moved, int(data.get("bars_in_trade", 0)), kind)


def simulate_action(
    action_name: str,
    position: Position | Mapping[str, Any] | None,
    forward: Mapping[str, Sequence[float]],
    atr: float,
    costs: Costs,
    rules: ExitRules,
    flatten_after_bars: int | None = None,
    *,
    decision_close: float | None = None,
    atr_path: Sequence[float] | None = None,
) -> SimResult:
    """Outcome of taking ``action_name`` at the decision bar, replayed over a recorded forward window.

    Flat + BUY/SELL opens at ``forward["open"][0]``; an open position continues under its management (after
    MOVE_TO_BE / ENABLE_TRAIL / DISABLE_TRAIL is applied at the decision close). Anything else (HOLD, or an action
    that does not apply) leaves the state unchanged. A trade still open after ``flatten_after_bars`` forward bars is
    closed at that bar's close with slippage ("flatten_time"); one still open at the end of the window is closed at
    the last close with slippage ("horizon"). The env's account rules (drawdown, daily loss) are not replayed.

    Args:
        action_name: One of ``tradelab.ACTIONS``.
        position: The position at the decision bar (a :class:`Position`, its dict form, or None when flat). A
            Position is copied, never mutated.
        forward: ``open``, ``high``, ``low``, ``close`` lists of the bars after the decision bar (optionally
            ``atr_path``; other keys are ignored).
        atr: ATR at the decision bar (points).
        costs: Contract economics.
        rules: Exit mechanics.
        flatten_after_bars: Close an open trade at the close of this many forward bars (>= 1), as the env does at
            its flatten time or session end; None: no forced flatten inside the window.
        decision_close: Close of the decision bar; required by MOVE_TO_BE and ENABLE_TRAIL on an open position.
        atr_path: ATR at each forward bar's close for the trail; defaults to ``forward["atr_path"]`` when the
            window records it, else ``atr`` throughout. With it the trail matches the env exactly.

    Returns:
        P&L (USD, net of commissions), R-multiple, exit reason ("no_trade" when no position was held), and bars
        held in total (an open position's earlier bars included, as the env's exit event reports).

    Raises:
        ValueError: Empty or ragged forward window, ``flatten_after_bars`` < 1, a management action without
            ``decision_close``, or a bad position dict.
    """
    opens, highs, lows, closes = (forward[k] for k in ("open", "high", "low", "close"))
    if atr_path is None:
        atr_path = forward.get("atr_path")
    horizon = len(opens)
    if horizon == 0 or not (len(highs) == len(lows) == len(closes) == horizon):
        raise ValueError(f"forward window must have equal, non-empty open/high/low/close lists, got {horizon} opens")
    if flatten_after_bars is not None and flatten_after_bars < 1:
        raise ValueError(f"flatten_after_bars must be >= 1 or None, got {flatten_after_bars!r}")
    if atr_path is not None and len(atr_path) != horizon:
        raise ValueError(f"atr_path has {len(atr_path)} values for a {horizon}-bar forward window")
    pos = _copy_position(position, rules)
    if pos is None:
        side = ENTRY_ACTIONS.get(action_name)
        if side is None:
            return SimResult(0.0, 0.0, REASON_NO_TRADE, 0)
        pos = open_position(side, float(opens[0]), atr, costs, rules)
    elif action_name in MANAGEMENT_ACTIONS:
        if decision_close is None and action_name != "DISABLE_TRAIL":
            raise ValueError(f"simulate_action({action_name!r}) on an open position needs decision_close")
        manage(pos, action_name, float(decision_close or 0.0), atr, costs, rules)
    return _run_forward(pos, opens, highs, lows, closes, atr, atr_path, costs, rules, flatten_after_bars)



class Counterfactual:
    """Any allowed action replayed over one ground truth's forward window, each simulated once, on demand.

    The one way to score actions in hindsight: the reward (:mod:`tradelab.core.reward`) and Stage 1's hindsight
    labels (:func:`tradelab.stage1.refine.score_actions`) both read outcomes from here.

    Args:
        truth: A ground-truth object (:func:`tradelab.core.ground_truth.build_ground_truth`): ``forward`` (prices,
            optional ``atr_path``, decision ``atr``), ``contract``, ``rules``, ``position``, ``allowed_actions``,
            ``decision_close`` and ``flatten_after_bars``.
    """

    __slots__ = ("allowed", "allowed_actions", "atr", "costs", "decision_close", "flatten", "forward", "position",
                 "rules", "_sims")

    def __init__(self, truth: Mapping[str, Any]) -> None:
        forward = truth["forward"]
        self.forward = {k: forward[k] for k in ("open", "high", "low", "close", "atr_path") if k in forward}
        self.atr = float(forward["atr"])
        self.costs = Costs.from_dict(truth["contract"])
        self.rules = ExitRules.from_dict(truth["rules"])
        self.position = truth.get("position")
        self.allowed_actions: tuple[str, ...] = tuple(truth["allowed_actions"])
        self.allowed = frozenset(self.allowed_actions)
        self.decision_close = float(truth["decision_close"])
        self.flatten = truth.get("flatten_after_bars")
        self._sims: dict[str, SimResult] = {}

    def sim(self, action: str) -> SimResult:
        """The replayed outcome of ``action`` (simulated on first use, then kept)."""
        result = self._sims.get(action)
        if result is None:
            result = simulate_action(
                action, self.position, self.forward, self.atr, self.costs, self.rules, self.flatten,
                decision_close=self.decision_close,
            )
            self._sims[action] = result
        return result

    def r_multiples(self) -> dict[str, float]:
        """R-multiple of every allowed action, in the ground truth's order."""
        return {action: float(self.sim(action).r_multiple) for action in self.allowed_actions}

    def best_entry_r(self) -> float | None:
        """The better R of the allowed entries while flat; None in a position or when no entry is allowed."""
        if self.position is not None:
            return None
        entries = [self.sim(a).r_multiple for a in ENTRY_ACTIONS if a in self.allowed]
        return max(entries) if entries else None


def _copy_position(position: Position | Mapping[str, Any] | None, rules: ExitRules) -> Position | None:
    if isinstance(position, Position):
        return replace(position)
    return position_from_dict(position, rules)


def _run_forward(
    pos: Position,
    opens: Sequence[float],
    highs: Sequence[float],
    lows: Sequence[float],
    closes: Sequence[float],
    atr: float,
    atr_path: Sequence[float] | None,
    costs: Costs,
    rules: ExitRules,
    flatten_after_bars: int | None,
) -> SimResult:
    """Step ``pos`` bar by bar until an exit, the forced flatten or the end of the window."""
    horizon = len(opens)
    last = horizon - 1 if flatten_after_bars is None else min(horizon, flatten_after_bars) - 1
    exit_: Exit | None = None
    for i in range(last + 1):
        bar_atr = atr if atr_path is None else float(atr_path[i])
        exit_ = step_bar(pos, float(opens[i]), float(highs[i]), float(lows[i]), float(closes[i]), bar_atr, costs, rules)
        if exit_ is not None:
            break
    if exit_ is None:
        reason = REASON_FLATTEN if flatten_after_bars is not None and flatten_after_bars <= horizon else REASON_HORIZON
        exit_ = Exit(exit_fill(pos.side, float(closes[last]), costs), reason)
    pnl = net_pnl_usd(pos.side, pos.entry_price, exit_.price, costs)
    return SimResult(pnl, r_multiple(pnl, pos, costs), exit_.reason, pos.bars_in_trade)
