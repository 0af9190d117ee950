"""The Stage 1 experience buffer: one record per advisor query (ARCHITECTURE.md §6), resolved, then appended.

A record is opened when an env is queried, learns the action the fused policy took on the next ``step_async``, and
is resolved by the env's later steps:

* if a position was open at the decision bar, or the action was an entry, the outcome is the first trade of that env
  that closes afterwards (pnl, R, exit reason, bars held);
* otherwise (advice followed by no trade) it resolves after ``horizon_bars`` bars with a zero-P&L ``no_trade`` outcome;
* an episode that ends first resolves it early (an open trade is marked at its last unrealised P&L, ``episode_end``).

``outcome.reward`` is the env reward summed from the decision until resolution. Resolved records are appended to the
JSONL in batches of ``flush_every`` with :func:`tradelab.fileio.append_jsonl`; the file is never rewritten, so a crash
loses at most one batch. :meth:`ExperienceRecorder.close` writes whatever is still pending with ``outcome: null``.

Forward windows for experience records: the next H bars after a decision, for rewards and labels only.

The agent never sees these values; the recorder slices them from the market arrays when it opens a record. Windows
stop at ``end_index`` (the split's end) so a training record never reaches into the holdout.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradelab.core import ACTIONS
from tradelab.core.tradesim import ENTRY_ACTIONS
from tradelab.core.records import Advice, ExperienceRecord, check_record
from tradelab.fileio import append_jsonl, tail_jsonl
from tradelab.provenance import SCHEMA_VERSION

@dataclass(frozen=True)
class ForwardSlicer:
    """Cuts forward windows out of a market's arrays.

    Attributes:
        arrays: The market's :class:`tradelab.marketdata.arrays.MarketArrays` (any object with the same columns).
        end_index: First bar the windows may not include (the split's end).
        horizon_bars: Bars per window (``env.forward_horizon_bars``).
        forced_exit: Per bar, non-zero where the env flattens an open position at that bar's close (flatten time or
            session end), e.g. ``tradelab.env.tables.get_tables(...).forced_exit``.
    """

    arrays: Any
    end_index: int
    horizon_bars: int
    forced_exit: Sequence[int]

    def forward(self, bar_index: int) -> dict[str, Any]:
        """``{horizon_bars, open, high, low, close, atr, atr_path}`` for the bars after ``bar_index``.

        ``atr`` is the decision bar's ATR (initial stop and target); ``atr_path`` is each forward bar's ATR, which the
        replay needs to ratchet a trailing stop exactly as the env does. ``horizon_bars`` is the window's actual
        length: shorter than configured only at the split's end.
        """
        start = bar_index + 1
        stop = min(start + self.horizon_bars, self.end_index)
        window = slice(start, max(start, stop))
        arrays = self.arrays
        return {
            "horizon_bars": int(max(0, stop - start)),
            "open": [float(x) for x in arrays.open[window]],
            "high": [float(x) for x in arrays.high[window]],
            "low": [float(x) for x in arrays.low[window]],
            "close": [float(x) for x in arrays.close[window]],
            "atr": float(arrays.atr[bar_index]),
            "atr_path": [float(x) for x in arrays.atr[window]],
        }

    def flatten_after_bars(self, bar_index: int) -> int | None:
        """Forward bars after which the env would force an open trade flat, or None if not inside the window.

        That is the first forward bar whose close the env flattens at (``replay.simulate_action``'s
        ``flatten_after_bars``).
        """
        start = bar_index + 1
        stop = min(start + self.horizon_bars, self.end_index)
        for k, index in enumerate(range(start, stop), start=1):
            if self.forced_exit[index]:
                return k
        return None


log = logging.getLogger(__name__)

EXIT_EPISODE_END = "episode_end"
EXIT_NO_TRADE = "no_trade"


@dataclass
class _Pending:
    """A record waiting for its action and then its outcome."""

    record: ExperienceRecord
    env_idx: int
    tracking_trade: bool = False
    has_action: bool = False
    bars_elapsed: int = 0
    reward_sum: float = 0.0


class ExperienceRecorder:
    """Builds, resolves and appends experience records for one Stage 1 run.

    Args:
        path: The JSONL file (``data/soft_grpo/<MKT>/stage1_experience.jsonl``), appended to, never truncated.
        market: Market name.
        run_id: Identifier of this run (distinct per process invocation).
        slicer: Cuts the forward window and flatten horizon from the market arrays.
        contract: ``{tick_size, tick_value, point_value, commission_per_side, slippage_ticks}``.
        rules: Exit and session rules stored in every record (``flatten_after_bars`` is added per record).
        flush_every: Resolved records per appended batch.
        recent_maxlen: Resolved records kept in memory for refinement.
    """

    def __init__(
        self,
        path: Path,
        *,
        market: str,
        run_id: str,
        slicer: ForwardSlicer,
        contract: Mapping[str, float],
        rules: Mapping[str, Any],
        flush_every: int,
        recent_maxlen: int,
    ) -> None:
        self.path = Path(path)
        self.market = market
        self.run_id = run_id
        self.slicer = slicer
        self.contract = dict(contract)
        self.rules = dict(rules)
        self.flush_every = int(flush_every)
        self.recent: deque[ExperienceRecord] = deque(maxlen=int(recent_maxlen))
        self._pending: list[_Pending] = []
        self._resolved: list[ExperienceRecord] = []
        self._seq = 0
        self.written = 0
        self.written_with_outcome = 0

    # --- opening -------------------------------------------------------------------------------------------------
    def open_record(
        self,
        env_idx: int,
        *,
        context: Mapping[str, Any],
        messages: Sequence[Mapping[str, str]],
        response: str,
        advice: Mapping[str, Any],
        adapter: Mapping[str, str] | None,
    ) -> str:
        """Start a record for a query made at ``context["bar_index"]`` in env ``env_idx``; return its id."""
        bar_index = int(context["bar_index"])
        self._seq += 1
        record_id = f"{self.run_id}-{self._seq:07d}"
        forward = self.slicer.forward(bar_index)
        rules = {**self.rules, "flatten_after_bars": self.slicer.flatten_after_bars(bar_index)}
        record: ExperienceRecord = {
            "schema_version": SCHEMA_VERSION,
            "id": record_id,
            "market": self.market,
            "run_id": self.run_id,
            "bar_index": bar_index,
            "timestamp": context["timestamp"],
            "prompt": [dict(m) for m in messages],
            "response": response,
            "advice": Advice(**advice),
            "action_taken": None,
            "allowed_actions": list(context["allowed_actions"]),
            "position": dict(context["position"]),
            "account": dict(context["account"]),
            "market_context": dict(context),
            "forward": forward,
            "contract": dict(self.contract),
            "rules": rules,
            "outcome": None,
            "adapter": dict(adapter) if adapter else None,
        }
        tracking = context["position"].get("side", "flat") != "flat"
        self._pending.append(_Pending(record=record, env_idx=env_idx, tracking_trade=tracking))
        return record_id

    # --- resolving -----------------------------------------------------------------------------------------------
    def on_actions(self, actions: np.ndarray) -> None:
        """Attach the actions the policy took to the records opened at the previous step."""
        for pending in self._pending:
            if pending.has_action:
                continue
            action_id = int(np.asarray(actions).reshape(-1)[pending.env_idx])
            name = ACTIONS[action_id]
            pending.record["action_taken"] = {"action": name, "action_id": action_id}
            pending.has_action = True
            if name in ENTRY_ACTIONS and name in pending.record["allowed_actions"]:
                pending.tracking_trade = True

    def on_step(
        self,
        env_idx: int,
        *,
        reward: float,
        done: bool,
        closed_trades: Sequence[Mapping[str, Any]],
        side_after: str,
        unrealized_after: float,
    ) -> None:
        """Advance the records of env ``env_idx`` by one bar.

        Args:
            env_idx: The env that stepped.
            reward: The env reward of this step.
            done: Whether the episode ended at this step.
            closed_trades: Trades of this env that closed during this step, oldest first, each
                ``{pnl, r_multiple, exit_reason, bars_held}``.
            side_after: Position side after the step ("flat", "long", "short"); for a done env, the terminal side.
            unrealized_after: Unrealised USD P&L after the step (terminal value for a done env).
        """
        still: list[_Pending] = []
        for pending in self._pending:
            if pending.env_idx != env_idx or not pending.has_action:
                still.append(pending)
                continue
            pending.bars_elapsed += 1
            pending.reward_sum += float(reward)
            outcome = self._resolve(pending, done, closed_trades, side_after, unrealized_after)
            if outcome is None:
                still.append(pending)
            else:
                self._finish(pending, outcome)
        self._pending = still
        if len(self._resolved) >= self.flush_every:
            self.flush()

    def _resolve(
        self,
        pending: _Pending,
        done: bool,
        closed_trades: Sequence[Mapping[str, Any]],
        side_after: str,
        unrealized_after: float,
    ) -> dict[str, Any] | None:
        reward = round(pending.reward_sum, 6)
        if pending.tracking_trade:
            if closed_trades:
                trade = closed_trades[0]
                return {
                    "pnl": float(trade["pnl"]),
                    "r_multiple": float(trade["r_multiple"]),
                    "exit_reason": str(trade["exit_reason"]),
                    "bars_held": int(trade["bars_held"]),
                    "reward": reward,
                }
            if side_after == "flat" or done:
                pnl = float(unrealized_after) if side_after != "flat" else 0.0
                reason = EXIT_EPISODE_END if side_after != "flat" else EXIT_NO_TRADE
                return {"pnl": pnl, "r_multiple": 0.0, "exit_reason": reason, "bars_held": pending.bars_elapsed,
                        "reward": reward}
            return None
        if done or pending.bars_elapsed >= self.slicer.horizon_bars:
            return {"pnl": 0.0, "r_multiple": 0.0, "exit_reason": EXIT_NO_TRADE, "bars_held": 0, "reward": reward}
        return None

    def _finish(self, pending: _Pending, outcome: dict[str, Any]) -> None:
        pending.record["outcome"] = outcome
        self._resolved.append(pending.record)
        self.recent.append(pending.record)

    def preload_history(self) -> dict[str, int]:
        """Fill the refinement window with the latest resolved records already in the experience file.

        Earlier runs' records (an earlier loop iteration, a previous Stage 1) teach as well as this run's: their
        hindsight labels replay the market's bars, not the policy. Records set aside (a replaced run's,
        :mod:`tradelab.setaside`) are skipped, so a run redone after a kill starts from the same window. Lines
        that do not parse or do not have the record's types are skipped and counted (the dataset export reports the
        same lines); records without an outcome teach nothing and are left out.

        Returns:
            ``{"records": loaded, "malformed": skipped lines}``.
        """
        if not self.path.is_file():
            return {"records": 0, "malformed": 0}
        from tradelab.setaside import covered, load_ledger

        window = int(self.recent.maxlen or 0)
        loaded = malformed = 0
        for line in tail_jsonl(self.path, window, skip=covered(load_ledger(self.path))):
            if line.record is None or not _well_typed(line.record):
                malformed += 1
            elif line.record["outcome"] is not None:
                self.recent.append(line.record)
                loaded += 1
        if malformed:
            log.warning("%s: %d malformed lines among the latest %d skipped for refinement", self.path, malformed,
                        window)
        log.info("refinement window starts with %d earlier records from %s", loaded, self.path)
        return {"records": loaded, "malformed": malformed}

    # --- writing -------------------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Append every resolved record not yet written; return how many were written."""
        batch, self._resolved = self._resolved, []
        count = append_jsonl(self.path, batch)
        self.written += count
        self.written_with_outcome += count
        return count

    def close(self) -> int:
        """Flush resolved records, then write every pending one with ``outcome: null``; return the total written."""
        count = self.flush()
        pending, self._pending = self._pending, []
        records = [p.record for p in pending]
        wrote = append_jsonl(self.path, records)
        self.written += wrote
        if wrote:
            log.info("%s: wrote %d unresolved experience records with outcome null", self.path, wrote)
        return count + wrote

    @property
    def pending_count(self) -> int:
        """Records opened but not yet resolved."""
        return len(self._pending)


def _well_typed(record: dict[str, Any]) -> bool:
    try:
        check_record(record)
    except ValueError:
        return False
    return True
