"""Outright-contract selection and the volume-roll continuous front-month series.

Outrights are ``<root><month code><1-2 year digits>`` (``NQH5``, ``NQZ24``). Spreads (``NQH5-NQM5``, anything with
``-`` or ``:``) and other roots (``MNQH5`` for root ``NQ``) are dropped and counted. The series is unadjusted: prices
are the traded contract's own, and each roll records the price gap between the two contracts on the roll day.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

MONTH_CODES = "FGHJKMNQUVXZ"
"""CME month codes, January..December."""

MAX_LISTED_SYMBOLS = 20
"""How many distinct dropped symbols the data report lists."""


def outright_pattern(root: str) -> re.Pattern[str]:
    """Regex matching the outright contracts of ``root`` (month code + 1 or 2 year digits)."""
    return re.compile(rf"^{re.escape(root)}([{MONTH_CODES}])(\d{{1,2}})$")


def select_outrights(
    frame: "pd.DataFrame", root: str, label: str, *, strict: bool
) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Keep the rows of ``root``'s outright contracts.

    A frame without symbols, or (``strict=False``, generic files) with a single non-spread symbol, is one series
    and kept whole.

    Args:
        frame: Rows with a ``symbol`` column.
        root: Root symbol from the contract spec.
        label: Source file, for messages.
        strict: Databento input: demand outrights of ``root``.

    Returns:
        The kept rows and ``{dropped_spread_rows, dropped_other_symbol_rows, dropped_symbols, contracts}``.

    Raises:
        DataError: No rows belong to ``root``.
    """
    import pandas as pd

    # Classify each distinct symbol once, then broadcast by code: files repeat a handful of symbols a million times.
    codes, uniques = pd.factorize(frame["symbol"])
    names = [str(u) for u in uniques]
    pattern = outright_pattern(root)
    is_spread = np.array([bool(re.search(r"[-:]", s)) for s in names] + [False])
    is_outright = np.array([pattern.fullmatch(s) is not None for s in names] + [False])
    if not is_outright.any():
        singles = [s for s, sp in zip(names, is_spread) if not sp]
        single_ok = len(singles) == 1 and (not strict or singles[0].startswith(root))
        if names == [""] or single_ok:
            is_outright = ~is_spread
        else:
            raise DataError(
                f"{label}: column 'symbol' has no outright contract of root {root!r} (like {root}H5); found "
                f"{sorted(names)[:MAX_LISTED_SYMBOLS]}. Import with the matching --market, or fix 'root_symbol' for "
                f"this market in config/markets.yaml"
            )
    spread, outright = is_spread[codes], is_outright[codes]
    other = ~outright & ~spread
    info = {
        "dropped_spread_rows": int(spread.sum()),
        "dropped_other_symbol_rows": int(other.sum()),
        "dropped_symbols": sorted(s for s, keep in zip(names, is_outright) if not keep)[:MAX_LISTED_SYMBOLS],
        "contracts": sorted(s for s, keep in zip(names, is_outright) if keep),
    }
    return frame[outright], info


def expiry_key(symbol: str, root: str, seen_year: int) -> int:
    """Sortable expiry (``year * 12 + month``) of an outright; a 1-digit year is resolved near ``seen_year``."""
    match = outright_pattern(root).fullmatch(symbol)
    if match is None:
        return 0
    month = MONTH_CODES.index(match.group(1)) + 1
    digits = match.group(2)
    if len(digits) == 2:
        year = 2000 + int(digits)
    else:
        # The contract trades within the decade around when it is seen: pick the year in [seen-1, seen+8].
        year = next(y for y in range(seen_year - 1, seen_year + 9) if y % 10 == int(digits))
    return year * 12 + month


def volume_roll(
    frame: "pd.DataFrame", dates: "pd.Series", root: str
) -> tuple["pd.DataFrame", list[dict[str, Any]], int]:
    """Continuous front month: per trading date the highest-volume contract, rolling forward only.

    A contract with a later expiry than the current one that trades the most volume on a date becomes the front
    from that date on; a later volume lead by an earlier expiry is ignored (never roll back).

    Args:
        frame: Outright rows (``symbol``, ``close``, ``volume``, ``ts``), any order.
        dates: Trading date of each row: America/New_York midnight as naive ``datetime64`` (aligned with frame).
        root: Root symbol, to order contracts by expiry.

    Returns:
        The rows of the front contract per date, the rolls ``[{date, from, to, price_gap}]`` (``price_gap`` = median
        close difference new - old over the roll day's shared minutes, or None) and the count of dates dropped
        because only already-rolled-past contracts traded.
    """
    if frame["symbol"].nunique() <= 1:
        return frame, [], 0
    daily = frame.groupby([dates, frame["symbol"]])["volume"].sum().unstack(fill_value=0.0).sort_index()
    first_year = {s: int(daily.index[int((daily[s] > 0).to_numpy().argmax())].year) for s in daily.columns}
    keys = {s: expiry_key(s, root, first_year[s]) for s in daily.columns}
    front: dict[Any, str] = {}
    rolls: list[dict[str, Any]] = []
    current: str | None = None
    skipped = 0
    for day, volumes in daily.iterrows():
        traded = volumes[volumes > 0]
        eligible = [s for s in traded.index if current is None or keys[s] >= keys[current]]
        if not eligible:
            skipped += 1
            continue
        best = max(eligible, key=lambda s: (traded[s], keys[s]))
        if current is not None and keys[best] > keys[current]:
            rolls.append({"date": day.date().isoformat(), "from": current, "to": best,
                          "price_gap": _roll_gap(frame, dates, day, current, best)})
            current = best
        elif current is None or current not in traded.index:
            current = best
        front[day] = current
    chosen = dates.map(front)
    return frame[frame["symbol"].to_numpy() == chosen.to_numpy()], rolls, skipped


def _roll_gap(frame: "pd.DataFrame", dates: "pd.Series", day: Any, old: str, new: str) -> float | None:
    on_day = frame[dates == day]
    old_close = on_day[on_day["symbol"] == old].set_index("ts")["close"]
    new_close = on_day[on_day["symbol"] == new].set_index("ts")["close"]
    old_close = old_close[~old_close.index.duplicated()]
    new_close = new_close[~new_close.index.duplicated()]
    shared = old_close.index.intersection(new_close.index)
    if len(shared) == 0:
        return None
    return float((new_close[shared] - old_close[shared]).median())
