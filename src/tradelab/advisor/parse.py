"""The advisor answer parser's public name (ARCHITECTURE.md §4); the parser lives in :mod:`tradelab.core.parse`."""

from tradelab.core.parse import Advice, parse_advice

__all__ = ["Advice", "parse_advice"]
