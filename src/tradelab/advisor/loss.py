"""The supervised loss of adapter training: response tokens only, output logits only where they are needed.

:func:`response_loss` is :func:`weighted_loss` computed without full-vocabulary logits at every position: the decoder
runs over the batch (the tokens every row starts with once for all rows, :func:`shared_prefix_length`), and only the
hidden states that predict a labelled token go through the output head, a chunk at a time under activation
checkpointing. Used by :mod:`tradelab.advisor.train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100
"""Label of tokens that do not count in the loss (prompt and padding)."""


def weighted_loss(logits: Any, labels: Any, weights: Any) -> Any:
    """Mean over examples of ``weight * (mean token cross-entropy over the example's response tokens)``."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    token_loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                 ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)
    counted = (shift_labels != IGNORE_INDEX).float()
    example_loss = (token_loss * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1.0)
    return (example_loss * weights).mean()


_LOGIT_SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale")
"""Config attributes of architectures whose head output is rescaled after ``lm_head``: :func:`response_loss` leaves
those to the model's own forward."""


def _chunk_loss(head: Any, softcap: float | None, hidden: Any, targets: Any, token_weights: Any) -> Any:
    import torch
    import torch.nn.functional as F

    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return (F.cross_entropy(logits, targets, reduction="none") * token_weights).sum()


def shared_prefix_length(encoded: Sequence[tuple[list[int], list[int]]]) -> int:
    """How many leading tokens every example shares and may run once for the whole micro-batch: the common token
    prefix, short of every example's first label (so no prefix position predicts a labelled token) and leaving each
    example a token of its own."""
    from tradelab.advisor.prefix import PrefixCache

    n = PrefixCache.common_length([ids for ids, _ in encoded])
    first_label = min(next((i for i, lab in enumerate(labs) if lab != IGNORE_INDEX), len(labs)) for _, labs in encoded)
    return max(0, min(n, first_label - 1, min(len(ids) for ids, _ in encoded) - 1))


def _decoder_hidden(decoder: Any, config: Any, input_ids: Any, attention_mask: Any, prefix_tokens: int) -> Any:
    """The decoder's last hidden states for every position after the first ``prefix_tokens``.

    With a prefix, its tokens go through the decoder once (batch of one) and their keys/values, broadcast to every
    row, are the cache the rest of each row attends to: the same attention and positions as running each row whole,
    with gradients flowing back into the one prefix computation (through LoRA on the key/value projections).
    """
    if prefix_tokens <= 0:
        return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    from transformers import DynamicCache

    rows = input_ids.shape[0]
    shared = decoder(input_ids=input_ids[:1, :prefix_tokens], use_cache=True).past_key_values
    cache = DynamicCache(config=config)
    for index, layer in enumerate(shared.layers):
        cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
    return decoder(input_ids=input_ids[:, prefix_tokens:], attention_mask=attention_mask, past_key_values=cache,
                   use_cache=True).last_hidden_state


def response_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any, weights: Any,
                  chunk_tokens: int, *, prefix_tokens: int = 0, batch_rows: int | None = None) -> Any:
    """:func:`weighted_loss` of the model on a batch, with output logits only at response positions.

    The decoder runs once over the whole batch (the shared ``prefix_tokens`` once for all rows,
    :func:`_decoder_hidden`); its hidden states at the positions that predict a labelled token go through the output
    head ``chunk_tokens`` at a time, each chunk under activation checkpointing, so at most one chunk's logits exist at
    a time (forward and backward). The value equals :func:`weighted_loss` on full logits. Architectures that rescale
    the head's output (see ``_LOGIT_SCALES``) use the full forward instead.

    Args:
        model: The causal LM (a ``PeftModel`` or a plain transformers model).
        input_ids: ``(batch, seq)`` token ids.
        attention_mask: ``(batch, seq)`` mask.
        labels: ``(batch, seq)`` labels, -100 where nothing is predicted.
        weights: ``(batch,)`` example weights.
        chunk_tokens: Response positions per head call.
        prefix_tokens: Leading tokens every row shares and no position of predicts a label
            (:func:`shared_prefix_length`); 0 runs every row whole.
        batch_rows: The optimiser batch these rows are a micro-batch of (the loss is a share of that batch's mean);
            default the rows given.
    """
    from torch.utils.checkpoint import checkpoint

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal.config.get_text_config() if hasattr(causal.config, "get_text_config") else causal.config
    head = causal.get_output_embeddings()
    decoder = causal.get_decoder() if hasattr(causal, "get_decoder") else None
    share = labels.shape[0] / (batch_rows or labels.shape[0])
    if head is None or decoder is None or decoder is causal or any(getattr(config, a, None) for a in _LOGIT_SCALES):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return weighted_loss(logits, labels, weights) * share
    hidden = _decoder_hidden(decoder, causal.config, input_ids, attention_mask, prefix_tokens)
    labels = labels[:, prefix_tokens:]
    shift_labels = labels[:, 1:]
    counted = shift_labels != IGNORE_INDEX
    rows = counted.nonzero()[:, 0]
    per_example = weights / counted.sum(dim=1).clamp(min=1) / (batch_rows or labels.shape[0])
    selected, targets, token_weights = hidden[:, :-1][counted], shift_labels[counted], per_example[rows]
    softcap = getattr(config, "final_logit_softcapping", None)
    total = hidden.new_zeros((), dtype=weights.dtype)
    for start in range(0, selected.shape[0], chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(_chunk_loss, head, softcap, selected[start:end], targets[start:end],
                                   token_weights[start:end], use_reentrant=False)
    return total
