"""The one gymnasium futures env. Light to import: gymnasium loads only when an env is built.

Public names: :func:`make_env`, ``FuturesTradingEnv`` (lazy), and the observation layout constants
:data:`ADVISOR_SLOT_SIZE` and :func:`advisor_slot_slice` (see :mod:`tradelab.env.layout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.env.layout import ADVISOR_SLOT_SIZE, advisor_slot_slice, obs_size

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.env.core import FuturesTradingEnv
    from tradelab.marketdata.arrays import MarketArrays

__all__ = ["ADVISOR_SLOT_SIZE", "FuturesTradingEnv", "advisor_slot_slice", "make_env", "obs_size"]


def make_env(
    market: str,
    root: str | Path,
    *,
    split: str = "train",
    seed: int = 0,
    config: TradelabConfig | None = None,
    arrays: MarketArrays | None = None,
) -> FuturesTradingEnv:
    """Build the env for ``market`` in workspace ``root``.

    Args:
        market: Market name (e.g. "NQ"); its contract spec comes from ``config.markets``.
        root: Workspace root holding ``data/<market>/``; unused when ``arrays`` is given.
        split: "train" (bars before the split index) or "holdout" (the rest).
        seed: Seed the first ``reset()`` without an explicit seed uses.
        config: Loaded config; None loads the default one.
        arrays: Precomputed arrays; None loads them with :func:`tradelab.marketdata.load_market_arrays`.

    Returns:
        A :class:`tradelab.env.core.FuturesTradingEnv`; call ``reset()`` before stepping.

    Raises:
        ConfigError: Unknown split or market without a contract spec.
        DataError: Missing data or a split too short for one step.
    """
    from tradelab.config import load_config
    from tradelab.env.core import FuturesTradingEnv
    from tradelab.errors import ConfigError
    from tradelab.markets import validate_market_name

    validate_market_name(market)
    config = config if config is not None else load_config()
    if arrays is None:
        from tradelab.marketdata import load_market_arrays

        arrays = load_market_arrays(root, market, config)
    elif arrays.market != market:
        raise ConfigError(
            f"make_env(market={market!r}) was given arrays of market {arrays.market!r}; pass matching arrays"
        )
    return FuturesTradingEnv(arrays, config, split=split, seed=seed)


def __getattr__(name: str) -> Any:
    if name == "FuturesTradingEnv":
        from tradelab.env.core import FuturesTradingEnv

        return FuturesTradingEnv
    raise AttributeError(f"module 'tradelab.env' has no attribute {name!r}")
