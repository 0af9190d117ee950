"""An int8 copy of the advisor for CPU generation: every linear layer as an 8-bit integer matrix product.

On a CPU with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI) an int8 matrix product runs about four times as
fast as float32 at the shapes an advisor batch has (measured on the 2-core machine: 16 x 576 by 576 x 1536 in 99 us
against 385 us), and generation on a model the size of SmolLM2-135M is almost all linear-layer arithmetic.

:class:`Int8Linear` keeps the weight as int8 with one scale per output channel and quantizes its input **per row**
(per token) at every call, then multiplies exactly in integers (``torch._int_mm``) and rescales. Per-row scales matter
twice. A row's result depends on that row alone, so a prompt's answer does not depend on the other prompts of its
batch (greedy answers batched and one at a time stay the same, as with float weights). And small language models
carry a few huge activations on one token (SmolLM2's MLP inputs reach about 3,000 on the first token of a prompt,
where the rest stay below 10): a scale per tensor, as torch's dynamic quantization uses, spends the int8 range on
that token and rounds every other token's values to a handful of levels, which changed the first answer token of
most held-out prompts; a scale per row confines the loss to that one token.

:func:`int8_copy` builds a copy of the merged model (base + LoRA folded in) whose ``nn.Linear`` layers, the output
head included, are :class:`Int8Linear`; everything else (the embedding table, the norms) is shared with the float
model, so the copy costs only its int8 weights, about a quarter of the linear layers' float32 size. The float model
is kept: adapters are swapped and log-probabilities scored on it, and the copy is rebuilt from it whenever the
weights change. The answers are those of other arithmetic and can differ from float32 greedy answers;
``bench/advisor_throughput.py`` prints how many do.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

INT8_MAX = 127


def int8_matmul_available() -> bool:
    """Whether this torch multiplies int8 matrices on the CPU (``torch._int_mm``)."""
    try:
        ones = torch.ones((2, 8), dtype=torch.int8)
        return bool(torch._int_mm(ones, ones.t().contiguous()).sum() == 32)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class Int8Linear(torch.nn.Module):
    """``y = x W^T + b`` with ``W`` in int8 (a scale per output channel) and ``x`` quantized per row at each call.

    Args:
        linear: The float layer to convert (not changed).
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / INT8_MAX
        quantized = torch.round(weight / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", quantized.t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / INT8_MAX
        quantized = torch.round(rows / scale).to(torch.int8)
        out = torch._int_mm(quantized, self.weight_t).float() * scale * self.weight_scale
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel x per-row"


def _swap_linears(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _swap_linears(child)


def int8_copy(model: Any) -> Any:
    """A copy of ``model`` (a causal LM, or a ``PeftModel`` whose adapter is merged) with its LoRA folded into the
    weights and every ``nn.Linear`` replaced by :class:`Int8Linear`, in eval mode. ``model`` is not changed.

    Args:
        model: The float model generation would otherwise use (on CPU).
    """
    from peft import PeftModel

    # The copy shares every tensor with ``model`` (nothing float is duplicated): merging is already done, so unloading
    # the LoRA wrappers only moves modules, and the swap gives the copy new int8 layers and leaves the shared float
    # weights to ``model``.
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    clone = copy.deepcopy(model, memo=shared)
    if isinstance(clone, PeftModel):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "already merged": the adapter was folded in for generation
            clone = clone.merge_and_unload()
    _swap_linears(clone)
    return clone.eval()


def int8_linear_count(model: Any) -> int:
    """How many :class:`Int8Linear` layers ``model`` has (0 for a float model)."""
    return sum(isinstance(module, Int8Linear) for module in model.modules())
