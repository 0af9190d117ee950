"""Market data: import (Databento, generic CSV/parquet), validation and repair, the synthetic default, features.

Public API (names resolve lazily, so ``import tradelab.marketdata`` pulls in neither pandas nor ``ta``):
    * :func:`generate_market` (root, market, config, *, days, seed) -> report dict
    * :func:`import_market` (root, path, market, config) -> report dict
    * :func:`list_markets` (root) -> [{market, rows, start, end, source, path}]
    * :func:`load_bars` (root, market) -> pandas.DataFrame
    * :func:`load_market_arrays` (root, market, config) -> :class:`MarketArrays`
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "generate_market": "tradelab.marketdata.synth",
    "import_market": "tradelab.marketdata.importer",
    "list_markets": "tradelab.marketdata.store",
    "load_bars": "tradelab.marketdata.store",
    "load_market_arrays": "tradelab.marketdata.loader",
    "MarketArrays": "tradelab.marketdata.arrays",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tradelab.marketdata' has no attribute {name!r}")
