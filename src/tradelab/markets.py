"""Market names and contract specifications.

Contract specs live in ``config/markets.yaml`` (see :class:`tradelab.config.schema.ContractSpec`); this module
validates names wherever they become paths and resolves specs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tradelab.errors import ConfigError

if TYPE_CHECKING:
    from tradelab.config.schema import ContractSpec, TradelabConfig

_MARKET_RE = re.compile(r"^[A-Z0-9]{1,16}$")


def validate_market_name(market: str) -> str:
    """Return ``market`` if it is a safe market name, else raise.

    A market name becomes a directory name, so it is restricted to uppercase letters and digits, 1-16 characters.

    Raises:
        ConfigError: The name is empty, too long, or has other characters.
    """
    if not isinstance(market, str) or not _MARKET_RE.fullmatch(market):
        raise ConfigError(
            f"invalid market name {market!r}: use 1-16 uppercase letters or digits, e.g. NQ, ES, MNQ"
        )
    return market


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
