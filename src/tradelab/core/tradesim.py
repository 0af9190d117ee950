"""Trading mechanics shared by the env and the GRPO reward: fills, exits and costs.

Pure Python (no pydantic, no torch, no tradelab.config): the reward imports this module under a bare interpreter.

Timing convention (identical in :class:`tradelab.env.FuturesTradingEnv` and
:func:`tradelab.core.replay.simulate_action`):

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

LONG = 1
SHORT = -1

ENTRY_ACTIONS = {"BUY": LONG, "SELL": SHORT}
MANAGEMENT_ACTIONS = ("MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")
COST_KEYS: tuple[str, ...] = ("tick_size", "tick_value", "point_value", "commission_per_side", "slippage_ticks")
"""The contract's cost fields (:class:`Costs`, an experience record's ``contract``)."""
RULE_KEYS: tuple[str, ...] = ("stop_atr", "target_r", "trail_atr", "be_buffer_ticks")
"""The exit-rule fields (:class:`ExitRules`, the scoring part of an experience record's ``rules``)."""


def is_entry_decision(record: Mapping[str, Any]) -> bool:
    """Whether an experience record was asked while flat with both entries allowed: the decision the market's
    direction decides (in an open position most hindsight answers are HOLD)."""
    return record["position"].get("side", "flat") == "flat" and set(ENTRY_ACTIONS) <= set(record["allowed_actions"])


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
        return cls(**{name: float(data[name]) for name in COST_KEYS})

    @classmethod
    def from_spec(cls, spec: Any) -> Costs:
        """Build from any object with these five attributes (e.g. ``tradelab.config.schema.ContractSpec``)."""
        return cls(**{name: float(getattr(spec, name)) for name in COST_KEYS})

    def to_dict(self) -> dict[str, float]:
        """The five fields as a plain dict (the experience record's ``contract``)."""
        return {name: getattr(self, name) for name in COST_KEYS}

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
        return cls(**{name: float(data[name]) for name in RULE_KEYS})

    def to_dict(self) -> dict[str, float]:
        """The four fields as a plain dict (part of the experience record's ``rules``)."""
        return {name: getattr(self, name) for name in RULE_KEYS}


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
