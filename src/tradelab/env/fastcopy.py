"""A dict whose ``deepcopy`` is fast for the env's JSON-like ``info`` trees.

SB3's ``DummyVecEnv`` deep-copies every env's ``info`` on every step, and the generic ``copy.deepcopy`` walk pays
for a memo, a dispatch and a keep-alive per scalar. Values here are scalars, strings, plain
dicts and lists, so a direct structural copy gives the same result; anything else still goes through
``copy.deepcopy``.
"""

from __future__ import annotations

import copy
from typing import Any

_ATOMIC = frozenset({str, int, float, bool, type(None)})


class FastCopyDict(dict):
    """A plain dict (JSON- and pickle-compatible) with a structural ``__deepcopy__``."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> FastCopyDict:
        return FastCopyDict(_copy_items(self, memo))


def _copy_items(value: dict, memo: dict[int, Any]) -> dict:
    return {key: _copy_item(item, memo) for key, item in value.items()}


def _copy_item(item: Any, memo: dict[int, Any]) -> Any:
    """Scalars are shared, flat dicts of scalars are shallow-copied, anything else is copied recursively."""
    kind = type(item)
    if kind in _ATOMIC:
        return item
    if kind is dict and _ATOMIC.issuperset(map(type, item.values())):
        return dict(item)
    return _copy_tree(item, memo)


def _copy_tree(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind is dict:
        return _copy_items(value, memo)
    if kind is list:
        return [_copy_item(item, memo) for item in value]
    if kind is FastCopyDict:
        return FastCopyDict(_copy_items(value, memo))
    return copy.deepcopy(value, memo)
