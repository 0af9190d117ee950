"""The physical bound beside a speed figure: arithmetic per answer or training example over the measured matmul rate.

A transformer's forward pass costs about two floating-point operations per weight per token in its linear layers,
plus the attention products (queries times keys, weights times values: ``4 x layers x width x context``), plus the
output head for the tokens whose logits are needed (the last prompt token and every generated one when answering;
the response tokens when training). Supervised training of a LoRA adapter on a frozen base adds the backward pass
through the base for the activations' gradients (about one forward again; the adapter's own weight gradients are
small), so a training example costs about twice its forward.

:func:`matmul_gflops` measures what this machine does for a matrix product of the model's widest shape, in float32
or with int8 dynamic quantization; dividing the arithmetic by it bounds the rate any implementation could reach.
Benchmarks print the bound beside each measured figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelArithmetic:
    """The parameter counts the FLOP estimates need.

    Attributes:
        linear_params: Weights of the decoder's linear layers (the output head excluded).
        head_params: Weights of the output head (vocabulary x width).
        layers: Decoder layers.
        width: Hidden size.
        intermediate: MLP width (for the rate measurement's shape).
    """

    linear_params: int
    head_params: int
    layers: int
    width: int
    intermediate: int

    @classmethod
    def of(cls, model: Any) -> ModelArithmetic:
        """Counted from a loaded causal LM (a ``PeftModel`` counts its base; LoRA weights are left out)."""
        import torch

        causal = model.get_base_model() if hasattr(model, "get_base_model") else model
        head = causal.get_output_embeddings()
        linear = sum(m.weight.numel() for name, m in causal.named_modules()
                     if isinstance(m, torch.nn.Linear) and m is not head and "lora_" not in name)
        config = causal.config.get_text_config() if hasattr(causal.config, "get_text_config") else causal.config
        return cls(linear_params=int(linear), head_params=int(head.weight.numel()),
                   layers=int(config.num_hidden_layers), width=int(config.hidden_size),
                   intermediate=int(getattr(config, "intermediate_size", 4 * config.hidden_size)))

    def forward_flops(self, tokens: int, context: int, head_tokens: int) -> float:
        """FLOPs of a forward pass over ``tokens`` tokens attending to ``context`` tokens on average, with output
        logits for ``head_tokens`` of them."""
        return (2.0 * self.linear_params * tokens + 4.0 * self.layers * self.width * context * tokens
                + 2.0 * self.head_params * head_tokens)

    def answer_flops(self, own_prompt_tokens: float, prefix_tokens: float, answer_tokens: float) -> float:
        """FLOPs of one answer: prefill of the prompt's own tokens (the shared prefix is run once per batch and left
        out), then one decode step per answer token."""
        context = prefix_tokens + own_prompt_tokens
        prefill = self.forward_flops(round(own_prompt_tokens), round(context / 2 + prefix_tokens / 2), 1)
        decode = self.forward_flops(round(answer_tokens), round(context + answer_tokens / 2), round(answer_tokens))
        return prefill + decode

    def training_flops(self, own_tokens: float, prefix_tokens: float, response_tokens: float) -> float:
        """FLOPs of one supervised example, forward and backward (about two forwards), the shared prefix excluded."""
        forward = self.forward_flops(round(own_tokens), round(prefix_tokens + own_tokens / 2), round(response_tokens))
        return 2.0 * forward


def matmul_gflops(rows: int, width: int, out_features: int, *, int8: bool = False, repeats: int = 20) -> float:
    """Measured GFLOP/s of ``(rows x width) @ (width x out_features)`` on this machine's current torch threads: a
    float32 ``nn.Linear``, or the int8 layer generation uses (:class:`tradelab.advisor.quantize.Int8Linear`, its
    per-row quantization included). The best of ``repeats`` timed calls."""
    import torch

    layer: Any = torch.nn.Linear(width, out_features, bias=False)
    if int8:
        from tradelab.advisor.quantize import Int8Linear

        layer = Int8Linear(layer)
    x = torch.randn(rows, width)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            layer(x)
        for _ in range(repeats):
            start = time.perf_counter()
            layer(x)
            best = min(best, time.perf_counter() - start)
    return 2.0 * rows * width * out_features / best / 1e9
