"""A dict whose ``deepcopy`` is fast for the env's JSON-like ``info`` trees.

SB3's ``DummyVecEnv`` deep-copies every env's ``info`` on every step; the generic ``copy.deepcopy`` walk (memo,
dispatch, keep-alive per scalar) cost more than the env step itself. Values here are scalars, strings, plain
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
    out = dict(value)
    for key, item in out.items():
        kind = type(item)
        if kind in _ATOMIC:
            continue
        if kind is dict and _ATOMIC.issuperset(map(type, item.values())):
            out[key] = dict(item)
        else:
            out[key] = _copy_tree(item, memo)
    return out


def _copy_tree(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind is dict:
        return _copy_items(value, memo)
    if kind is list:
        out = list(value)
        for i, item in enumerate(out):
            item_kind = type(item)
            if item_kind in _ATOMIC:
                continue
            if item_kind is dict and _ATOMIC.issuperset(map(type, item.values())):
                out[i] = dict(item)
            else:
                out[i] = _copy_tree(item, memo)
        return out
    if kind is FastCopyDict:
        return FastCopyDict(_copy_items(value, memo))
    return copy.deepcopy(value, memo)
