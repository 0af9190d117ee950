"""Shared-prefix key/value reuse: the system turn every advisor prompt starts with goes through the model once.

Every prompt of a batch starts with the same tokens up to its user message (the system turn and the user header;
with Gemma's template, which folds the system text into the first user turn, that whole opening). Prefilling them
once per batch row is repeated work, so :class:`PrefixCache` keeps those tokens' keys/values (one copy per weights)
and hands ``generate`` a cache already holding them; prefill then covers each prompt's own tokens only. The advisor
picks the prefix (:meth:`tradelab.advisor.generate.Advisor`) and reports its length, or why there is none.

A batch is laid out ``[prefix][left padding][own tokens]`` with the attention mask zero on the padding. ``generate``
derives position ids from the mask (its cumulative sum), so each row gets the positions and the attention of its
unpadded prompt, exactly as plain left padding gives them. A sliding attention window is the exception: it counts
physical positions, so padding between the prefix and a row's tokens would push prefix tokens out of the window
early; the advisor uses no prefix when a batch plus its answers is as wide as the smallest window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, *, prefix: Sequence[int] = ()) -> tuple[Any, Any]:
    """Token id lists as one left-padded batch: ``[prefix][padding][row]`` on every row.

    Args:
        rows: Each row's own token ids (may be empty).
        pad_id: Id written on the padding.
        prefix: Ids every row starts with, placed before the padding (empty: plain left padding).

    Returns:
        ``(input_ids, attention_mask)``, CPU ``long`` tensors of shape ``(rows, len(prefix) + longest row)``; the
        mask is 0 on the padding only.
    """
    import torch

    n_prefix = len(prefix)
    width = n_prefix + max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    if n_prefix:
        input_ids[:, :n_prefix] = torch.tensor(list(prefix), dtype=torch.long)
        attention_mask[:, :n_prefix] = 1
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            attention_mask[i, width - len(row):] = 1
    return input_ids, attention_mask


class PrefixCache:
    """The keys/values of one token prefix under the current weights.

    The owner calls :meth:`clear` whenever the weights change (an adapter applied, merged or removed).
    """

    def __init__(self) -> None:
        self._ids: tuple[int, ...] = ()
        self._layers: list[tuple[Any, Any]] = []

    def clear(self) -> None:
        self._ids, self._layers = (), []

    @staticmethod
    def common_length(rows: Sequence[Sequence[int]]) -> int:
        """Length of the longest token prefix all ``rows`` share."""
        n = min((len(row) for row in rows), default=0)
        for i in range(n):
            token = rows[0][i]
            if any(row[i] != token for row in rows):
                return i
        return n

    def _prefix_layers(self, model: Any, prefix_ids: Sequence[int], device: str) -> list[tuple[Any, Any]]:
        import torch

        key = tuple(prefix_ids)
        if key != self._ids:
            with torch.inference_mode():
                out = model(input_ids=torch.tensor([key], device=device), use_cache=True)
            self._layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self._ids = key
        return self._layers

    def inputs(self, model: Any, rows: Sequence[Sequence[int]], prefix_ids: Sequence[int], *, pad_token_id: int,
               device: str) -> dict[str, Any]:
        """``generate`` keyword arguments for ``rows``: token ids that all start with ``prefix_ids`` (may be empty).

        Returns:
            ``input_ids`` and ``attention_mask`` of shape ``(rows, prefix + longest own part)``, each row's own part
            left-padded after the prefix; with a prefix also ``past_key_values``, a cache holding the prefix's
            keys/values for every row. An empty prefix is plain left padding.
        """
        n_prefix = len(prefix_ids)
        input_ids, attention_mask = left_pad([row[n_prefix:] for row in rows], pad_token_id, prefix=prefix_ids)
        inputs: dict[str, Any] = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        if n_prefix:
            from transformers import DynamicCache

            cache = DynamicCache(config=model.config)
            for layer_idx, (keys, values) in enumerate(self._prefix_layers(model, prefix_ids, device)):
                # The cache copies the broadcast rows into tensors of its own, which generate then extends.
                cache.update(keys.expand(len(rows), -1, -1, -1), values.expand(len(rows), -1, -1, -1), layer_idx)
            inputs["past_key_values"] = cache
        return inputs
