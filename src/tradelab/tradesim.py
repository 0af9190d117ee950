"""Trading mechanics shared by the env and the GRPO reward: fills, exits, costs and counterfactual simulation.

Pure Python (no pydantic, no torch, no tradelab.config): the reward imports this module under a bare interpreter.

Timing convention (identical in :class:`tradelab.env.FuturesTradingEnv` and :func:`simulate_action`):

* The agent decides at the close of bar ``t``.
* A market entry fills at bar ``t+1``'s open, ``slippage_ticks`` against the trader. The initial stop is
  ``stop_atr`` x ATR(t) from the fill and the target ``target_r`` x that risk, both rounded to the tick grid.
* Management actions (break-even, trail on/off) taken at ``t`` change the stop before bar ``t+1`` trades.
* Bar ``t+1`` is then checked by :func:`step_bar`: an open beyond the stop (or target) fills at the open; otherwise a
  bar whose range touches the stop exits there; if both stop and target lie inside one bar the stop is assumed
  first (conservative). Stops and market exits pay slippage; targets are limit orders and do not.
* With the trail on, the stop ratchets at each bar's close to ``close -/+ trail_atr x ATR`` of that bar; it never
  loosens.
* A realised trade costs ``2 x commission_per_side``; ``net_pnl_usd`` includes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

LONG = 1
SHORT = -1

ENTRY_ACTIONS = {"BUY": LONG, "SELL": SHORT}
MANAGEMENT_ACTIONS = ("MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")

REASON_STOP = "stop"
REASON_BREAKEVEN = "breakeven"
REASON_TRAIL = "trail"
REASON_TARGET = "target"
REASON_FLATTEN = "flatten_time"
REASON_HORIZON = "horizon"
REASON_NO_TRADE = "no_trade"


@dataclass(frozen=True)
class Costs:
    """Contract economics in index points and USD per contract.

    Attributes:
        tick_size: Minimum price increment (points).
        tick_value: USD per tick.
        point_value: USD per full point.
        commission_per_side: USD per contract per side; a round turn costs twice this.
        slippage_ticks: Adverse ticks on every market fill (entries, stops, forced exits).
    """

    tick_size: float
    tick_value: float
    point_value: float
    commission_per_side: float
    slippage_ticks: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Costs:
        """Build from a mapping that holds at least these five keys (extra keys are ignored).

        Raises:
            KeyError: A required key is missing.
        """
        return cls(**{name: float(data[name]) for name in _COST_KEYS})

    @classmethod
    def from_spec(cls, spec: Any) -> Costs:
        """Build from any object with these five attributes (e.g. ``tradelab.config.schema.ContractSpec``)."""
        return cls(**{name: float(getattr(spec, name)) for name in _COST_KEYS})

    def to_dict(self) -> dict[str, float]:
        """The five fields as a plain dict (the experience record's ``contract``)."""
        return {name: getattr(self, name) for name in _COST_KEYS}

    @property
    def slippage_points(self) -> float:
        """Adverse slippage of one market fill, in points."""
        return self.slippage_ticks * self.tick_size

    @property
    def round_turn_usd(self) -> float:
        """Commission for one entry plus one exit, USD."""
        return 2.0 * self.commission_per_side


@dataclass(frozen=True)
class ExitRules:
    """Exit mechanics in ATRs, R-multiples and ticks.

    Attributes:
        stop_atr: Initial stop distance from the fill, in ATRs.
        target_r: Target distance as a multiple of the initial risk.
        trail_atr: Trailing-stop distance from the close, in ATRs.
        be_buffer_ticks: Ticks beyond the entry (in the trade's favour) where MOVE_TO_BE puts the stop.
    """

    stop_atr: float
    target_r: float
    trail_atr: float
    be_buffer_ticks: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExitRules:
        """Build from a mapping that holds at least these four keys (extra keys such as flatten_time are ignored).

        Raises:
            KeyError: A required key is missing.
        """
        return cls(**{name: float(data[name]) for name in _RULE_KEYS})

    def to_dict(self) -> dict[str, float]:
        """The four fields as a plain dict (part of the experience record's ``rules``)."""
        return {name: getattr(self, name) for name in _RULE_KEYS}


_COST_KEYS = ("tick_size", "tick_value", "point_value", "commission_per_side", "slippage_ticks")
_RULE_KEYS = ("stop_atr", "target_r", "trail_atr", "be_buffer_ticks")


@dataclass(slots=True)
class Position:
    """One open contract.

    Attributes:
        side: +1 long, -1 short.
        entry_price: Fill price including slippage.
        stop: Current stop price.
        target: Take-profit (limit) price.
        initial_risk_points: Distance from the fill to the initial stop; 1R in points.
        trail_on: Whether the stop ratchets at each bar close.
        be_moved: Whether MOVE_TO_BE has been applied.
        bars_in_trade: Bars processed since the fill (the fill bar counts as 1).
        stop_kind: Exit reason a stop fill reports: "stop", "breakeven" or "trail" (who last moved the stop).
    """

    side: int
    entry_price: float
    stop: float
    target: float
    initial_risk_points: float
    trail_on: bool = False
    be_moved: bool = False
    bars_in_trade: int = 0
    stop_kind: str = REASON_STOP

    @property
    def side_name(self) -> str:
        """"long" or "short"."""
        return "long" if self.side == LONG else "short"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-safe); :func:`position_from_dict` reads it back."""
        return {
            "side": self.side_name,
            "entry_price": self.entry_price,
            "stop": self.stop,
            "target": self.target,
            "initial_risk_points": self.initial_risk_points,
            "trail_on": self.trail_on,
            "be_moved": self.be_moved,
            "bars_in_trade": self.bars_in_trade,
        }


class Exit(NamedTuple):
    """An exit fill: price (slippage included) and reason."""

    price: float
    reason: str


class SimResult(NamedTuple):
    """Outcome of :func:`simulate_action` over a forward window."""

    pnl_usd: float
    r_multiple: float
    exit_reason: str
    bars_held: int


def round_to_tick(price: float, tick_size: float) -> float:
    """Nearest price on the tick grid (rounded to 1e-9 so ticks like 0.1 give clean decimals)."""
    return round(round(price / tick_size) * tick_size, 9)


def open_position(side: int, fill_ref_price: float, atr: float, costs: Costs, rules: ExitRules) -> Position:
    """Open one contract with a market order at ``fill_ref_price`` (bar t+1's open).

    Args:
        side: +1 long or -1 short.
        fill_ref_price: Price the market order executes against, before slippage.
        atr: ATR at the decision bar, in points (must be positive and finite).
        costs: Contract economics.
        rules: Exit mechanics.

    Returns:
        The new position; its stop is at least one tick from the fill.

    Raises:
        ValueError: ``side`` is not +1/-1 or ``atr`` is not a positive finite number.
    """
    if side not in (LONG, SHORT):
        raise ValueError(f"side must be +1 (long) or -1 (short), got {side!r}")
    if not (atr > 0.0 and math.isfinite(atr)):
        raise ValueError(f"atr must be a positive finite number of points, got {atr!r}")
    tick = costs.tick_size
    fill = fill_ref_price + side * costs.slippage_ticks * tick
    stop = round_to_tick(fill - side * max(rules.stop_atr * atr, tick), tick)
    risk = side * (fill - stop)
    target = round_to_tick(fill + side * rules.target_r * risk, tick)
    return Position(side=side, entry_price=fill, stop=stop, target=target, initial_risk_points=risk)


def break_even_level(position: Position, costs: Costs, rules: ExitRules) -> float:
    """Stop price MOVE_TO_BE would set: entry plus ``be_buffer_ticks`` in the trade's favour, on the tick grid."""
    tick = costs.tick_size
    return round_to_tick(position.entry_price + position.side * rules.be_buffer_ticks * tick, tick)


def can_move_to_be(position: Position, close: float, costs: Costs, rules: ExitRules) -> bool:
    """Whether MOVE_TO_BE is meaningful at ``close``: not done yet, price beyond the level, and it tightens the stop."""
    if position.be_moved:
        return False
    level = break_even_level(position, costs, rules)
    side = position.side
    return side * (close - level) > 0.0 and side * (level - position.stop) > 0.0


def ratchet_trail(position: Position, close: float, atr: float, costs: Costs, rules: ExitRules) -> bool:
    """Tighten the stop to ``close -/+ trail_atr x atr`` if that is tighter and still on the safe side of ``close``.

    Returns:
        Whether the stop moved.
    """
    side = position.side
    new_stop = round_to_tick(close - side * rules.trail_atr * atr, costs.tick_size)
    if side * (new_stop - position.stop) > 0.0 and side * (close - new_stop) > 0.0:
        position.stop = new_stop
        position.stop_kind = REASON_TRAIL
        return True
    return False


def manage(position: Position, action_name: str, close: float, atr: float, costs: Costs, rules: ExitRules) -> bool:
    """Apply a management action decided at a bar's close.

    MOVE_TO_BE moves the stop to :func:`break_even_level` when :func:`can_move_to_be`; ENABLE_TRAIL turns the trail
    on and ratchets once at ``close``; DISABLE_TRAIL turns it off (the stop stays where it is).

    Returns:
        Whether the action changed the position; False means it was not applicable (treat it as HOLD).
    """
    if action_name == "MOVE_TO_BE":
        if not can_move_to_be(position, close, costs, rules):
            return False
        position.stop = break_even_level(position, costs, rules)
        position.be_moved = True
        position.stop_kind = REASON_BREAKEVEN
        return True
    if action_name == "ENABLE_TRAIL":
        if position.trail_on:
            return False
        position.trail_on = True
        if atr > 0.0 and math.isfinite(atr):
            ratchet_trail(position, close, atr, costs, rules)
        return True
    if action_name == "DISABLE_TRAIL":
        if not position.trail_on:
            return False
        position.trail_on = False
        return True
    return False


def exit_fill(side: int, price: float, costs: Costs, *, limit: bool = False) -> float:
    """Fill price of an exit order for a ``side`` position: market/stop orders pay slippage, limit orders do not."""
    if limit:
        return price
    return price - side * costs.slippage_ticks * costs.tick_size


def step_bar(
    position: Position, o: float, h: float, l: float, c: float, atr: float, costs: Costs, rules: ExitRules
) -> Exit | None:
    """Process one bar for an open position: gap at the open, stop/target inside the bar, then the trail at close.

    Args:
        position: The open position (mutated: bars_in_trade, and the stop when trailing).
        o, h, l, c: The bar's prices.
        atr: ATR at this bar's close (used only by the trail).
        costs: Contract economics.
        rules: Exit mechanics.

    Returns:
        The exit if the position closed in this bar, else None.
    """
    position.bars_in_trade += 1
    side = position.side
    stop = position.stop
    target = position.target
    if side == LONG:
        if o <= stop:
            return Exit(o - costs.slippage_ticks * costs.tick_size, position.stop_kind)
        if o >= target:
            return Exit(o, REASON_TARGET)
        if l <= stop:
            return Exit(stop - costs.slippage_ticks * costs.tick_size, position.stop_kind)
        if h >= target:
            return Exit(target, REASON_TARGET)
    else:
        if o >= stop:
            return Exit(o + costs.slippage_ticks * costs.tick_size, position.stop_kind)
        if o <= target:
            return Exit(o, REASON_TARGET)
        if h >= stop:
            return Exit(stop + costs.slippage_ticks * costs.tick_size, position.stop_kind)
        if l <= target:
            return Exit(target, REASON_TARGET)
    if position.trail_on and atr > 0.0 and math.isfinite(atr):
        ratchet_trail(position, c, atr, costs, rules)
    return None


def net_pnl_usd(side: int, entry: float, exit: float, costs: Costs) -> float:
    """Realised USD P&L of one contract round turn, commissions included."""
    return side * (exit - entry) * costs.point_value - 2.0 * costs.commission_per_side


def r_multiple(pnl_usd: float, position: Position, costs: Costs) -> float:
    """``pnl_usd`` in units of the position's initial risk in USD."""
    return pnl_usd / (position.initial_risk_points * costs.point_value)


def unrealized_pnl_usd(position: Position, price: float, costs: Costs) -> float:
    """Mark-to-market USD P&L at ``price``, before exit costs and commissions."""
    return position.side * (price - position.entry_price) * costs.point_value


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
