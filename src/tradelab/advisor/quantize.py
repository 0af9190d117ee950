"""An int8 copy of the advisor for CPU generation: dynamic quantization of every linear layer.

On a CPU with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI), torch's dynamically quantized linear layer
(int8 weights, activations quantized per call) multiplies about four times faster than float32 at the shapes an
advisor batch has (measured on the 2-core machine: 16 x 576 by 576 x 1536 in 98 us against 385 us). Generation on
a model the size of SmolLM2-135M is almost all linear-layer arithmetic, so :func:`int8_copy` builds a copy of the
merged model (base + LoRA folded in) whose ``nn.Linear`` layers, the output head included, are quantized; the
embedding table stays float32. The float32 model is kept: adapters are swapped and log-probabilities scored on it,
and the copy is rebuilt from it whenever the weights change.

The answers are those of other arithmetic: they can differ from float32 greedy answers. ``bench/advisor_throughput.py``
prints how many do, and the parse rate either way.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

QUANTIZED_DTYPE = torch.qint8


def int8_copy(model: Any) -> Any:
    """A copy of ``model`` (a causal LM, or a ``PeftModel`` whose adapter is merged) with its LoRA folded into the
    weights and every ``nn.Linear`` dynamically quantized to int8, in eval mode. ``model`` is not changed.

    Args:
        model: The float32 model generation would otherwise use (on CPU).
    """
    from peft import PeftModel

    clone = copy.deepcopy(model)
    if isinstance(clone, PeftModel):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "already merged": the adapter was folded in for generation
            clone = clone.merge_and_unload()
    with warnings.catch_warnings():
        # torch marks the eager quantization API deprecated in favour of torchao; it is what runs on this torch.
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(clone, {torch.nn.Linear}, dtype=QUANTIZED_DTYPE,
                                                           inplace=True)
    return quantized.eval()


def quantized_linear_count(model: Any) -> int:
    """How many dynamically quantized linear layers ``model`` has (0 for a float model)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(module, DynamicLinear) for module in model.modules())
