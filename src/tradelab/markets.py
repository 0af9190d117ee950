"""Market names and contract specifications.

Contract specs live in ``config/markets.yaml`` (see :class:`tradelab.config.schema.ContractSpec`); this module
validates names wherever they become paths (:mod:`tradelab.market_names`) and resolves specs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradelab.errors import ConfigError
from tradelab.market_names import validate_market_name

if TYPE_CHECKING:
    from tradelab.config.schema import ContractSpec, TradelabConfig

__all__ = ["contract_spec", "validate_market_name"]


def contract_spec(config: "TradelabConfig", market: str) -> "ContractSpec":
    """Return the contract spec for ``market`` from the loaded config.

    Raises:
        ConfigError: The market has no entry in ``config/markets.yaml``.
    """
    validate_market_name(market)
    specs = config.markets.contracts
    if market not in specs:
        known = ", ".join(sorted(specs))
        raise ConfigError(
            f"config/markets.yaml: no contract spec for market {market!r} (known: {known}); "
            f"add an entry under 'contracts:'"
        )
    return specs[market]
