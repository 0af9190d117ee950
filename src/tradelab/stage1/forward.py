"""Forward windows for experience records: the next H bars after a decision, for rewards and labels only.

The agent never sees these values; the recorder slices them from the market arrays when it opens a record. Windows
stop at ``end_index`` (the split's end) so a training record never reaches into the holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
