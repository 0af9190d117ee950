"""Market-name validation: the one rule both the config schema and :mod:`tradelab.markets` apply.

It depends on nothing but :mod:`tradelab.errors`, so the schema can import it without importing the module that
resolves contract specs from the schema (the dependency stays one-way: markets -> config.schema -> market_names).
"""

from __future__ import annotations

import re

from tradelab.errors import ConfigError

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
