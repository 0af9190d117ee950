"""The adapter round trip: what an engine publishes must reach the advisor unchanged.

After a run the published adapter is loaded the way Stage 1 and evaluation load it
(:func:`tradelab.advisor.load.load_advisor_model`: base from a path, PEFT adapter on top, eval mode) and the
log-probabilities of one answer-shaped completion on a few held-out prompts are compared with the engine's own
values from its final in-memory model. A difference means the saved adapter is not the trained one (wrong
modules saved, a scaling lost, a different base).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradelab.config import TradelabConfig

PROBE_COMPLETION = "<think>\nTrend and ATR checked against the allowed actions.\n</think>\nHOLD | 0.50 | no edge"
"""A completion in the advisor's answer shape (reasoning block, then the answer line)."""


def completion_logprobs(model: Any, tokenizer: Any, prompts: list[list[int]], completion: str) -> list[float]:
    """Sum of log p(completion | prompt) for each tokenised prompt, one forward pass per prompt."""
    import torch

    answer = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    device = next(model.parameters()).device
    values = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt + answer], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1:-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, len(prompt):].unsqueeze(-1)).sum()
            values.append(float(logp))
    return values


def adapter_round_trip(engine_values: list[float], prompts: list[list[int]], config: TradelabConfig,
                       root: str | Path, base: Path, adapter: Path, *, device: str,
                       tolerance: float = 1e-3) -> dict[str, Any]:
    """Load ``adapter`` as Stage 1 does and compare its log-probs with ``engine_values``.

    Returns:
        ``{"ok", "prompts", "max_abs_diff", "tolerance", "adapter"}``.
    """
    from tradelab.advisor.load import load_advisor_model

    llm = config.llm.model_copy(update={"model": str(base)})
    loaded = load_advisor_model(config.model_copy(update={"llm": llm}), root, adapter_path=adapter, device=device)
    values = completion_logprobs(loaded.model, loaded.tokenizer, prompts, PROBE_COMPLETION)
    diff = max((abs(a - b) for a, b in zip(engine_values, values)), default=0.0)
    return {"ok": diff <= tolerance * max(1.0, max(abs(v) for v in engine_values)), "prompts": len(prompts),
            "max_abs_diff": diff, "tolerance": tolerance, "adapter": str(adapter)}
