"""The int8 copy CPU generation runs: per-row quantization, the float model untouched, answers independent of the batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tradelab.advisor.quantize import Int8Linear, int8_copy, int8_linear_count, int8_matmul_available
from tradelab.config import load_config

pytestmark = pytest.mark.skipif(not int8_matmul_available(), reason="torch._int_mm is not available on this CPU")


def test_a_row_is_quantized_on_its_own() -> None:
    """A token with huge activations (as SmolLM2's first token has) costs precision on its own row only."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    layer = Int8Linear(linear)
    x = torch.randn(8, 64)
    outlier = x.clone()
    outlier[0, 3] = 3000.0
    with torch.no_grad():
        exact = linear(outlier)
        approx = layer(outlier)
        alone = torch.cat([layer(outlier[i:i + 1]) for i in range(8)])
    assert torch.equal(approx, alone)  # each row's result depends on that row alone
    relative = ((approx - exact).abs().amax(dim=1) / exact.abs().amax(dim=1))[1:]
    assert float(relative.max()) < 0.03  # the other rows keep their precision
    per_tensor = torch.round(outlier / (outlier.abs().max() / 127))  # one scale for the whole call
    assert int((per_tensor[1:] != 0).sum()) < 0.05 * per_tensor[1:].numel()  # ... would round them away


def test_the_copy_leaves_the_float_model_alone(tiny_advisor_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_advisor_dir).eval()
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    copy = int8_copy(model)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert int8_linear_count(copy) == linears and int8_linear_count(model) == 0
    assert copy.get_input_embeddings().weight is model.get_input_embeddings().weight  # shared, not duplicated
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, before)
        after = copy(input_ids=ids).logits
    error, scale = (after - before).abs(), float(before.abs().max())
    assert float(error.mean()) < 0.01 * scale and float(error.max()) < 0.1 * scale
    assert int((after.argmax(-1) == before.argmax(-1)).sum()) >= 5


@pytest.mark.slow
def test_int8_answers_are_the_same_batched_or_one_at_a_time(advisor_root: Path, warm_adapter_dir: Path) -> None:
    from tradelab.advisor.generate import Advisor
    from tradelab.advisor.synth import random_contexts

    config = load_config(overrides={"llm.generation.cache": False, "llm.generation.cpu_quantization": "int8",
                                    "llm.device": "cpu"})
    advisor = Advisor(config, advisor_root, adapter_path=warm_adapter_dir)
    assert advisor.quantized and int8_linear_count(advisor.generation_model()) > 0
    contexts = random_contexts(8, 31)
    batched = [r.text for r in advisor.advise(contexts)]
    single = [advisor.advise([c])[0].text for c in contexts]
    assert batched == single
    assert sum(r.advice.parse_ok for r in advisor.advise(contexts)) >= 6
