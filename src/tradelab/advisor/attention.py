"""SDPA attention that keeps grouped-query key/value heads un-repeated, for padded batches on CPU.

transformers' ``sdpa`` attention copies a grouped-query model's key/value heads up to the query head count whenever
an attention mask is passed, which is every padded batch: CUDA's fused kernels take GQA only without a mask. On
CPU, torch's SDPA takes ``enable_gqa=True`` together with a mask in the same flash kernel, so the copy buys nothing,
and it copies the whole KV cache again at every decode step. :data:`NAME` is the same computation without them; it is registered with
transformers by :func:`cpu_attention`, and the loader asks for it on CPU.
"""

from __future__ import annotations

from typing import Any

NAME = "sdpa_gqa"


def _sdpa_gqa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, is_causal: bool | None = None, **_: Any) -> tuple[Any, None]:
    """transformers' attention signature: ``(B, H, q, d)`` query, ``(B, KV, k, d)`` keys; ``(B, q, H, d)`` out."""
    import torch

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # Same rule as transformers' sdpa: the causal flag only for a multi-token query without an explicit mask.
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None


def cpu_attention() -> str:
    """Register :data:`NAME` with transformers (again is harmless) and return it, for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _sdpa_gqa)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same boolean masks as ``sdpa``
    return NAME
