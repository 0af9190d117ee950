"""LoRA SFT: response-only loss, weights, PEFT format, determinism, continuation, merging, and the warm start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradelab.advisor.prompts import build_messages
from tradelab.advisor.synth import random_contexts
from tradelab.advisor.teacher import teacher_response
from tradelab.advisor.loss import IGNORE_INDEX, weighted_loss
from tradelab.advisor.train import (
    ADAPTER_INFO,
    SFTExample,
    collate,
    encode_example,
    merge_adapter,
    train_adapter,
)
from tradelab.config import TradelabConfig, load_config
from tradelab.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer(tiny_advisor_dir: Path):  # noqa: ANN201 - a transformers tokenizer
    from tradelab.advisor.load import load_tokenizer

    return load_tokenizer(tiny_advisor_dir)


def _examples(config: TradelabConfig, n: int, seed: int) -> list[SFTExample]:
    return [SFTExample(build_messages(c, config), teacher_response(c)) for c in random_contexts(n, seed)]


def test_prompt_tokens_are_masked(tokenizer, config: TradelabConfig) -> None:  # noqa: ANN001
    from tradelab.advisor.prompts import render_chat

    example = _examples(config, 1, 0)[0]
    ids, labels = encode_example(tokenizer, example, max_seq_len=512)
    prompt_len = len(tokenizer(render_chat(tokenizer, example.messages), add_special_tokens=False)["input_ids"])
    assert len(ids) == len(labels)
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[prompt_len:], skip_special_tokens=True) == example.target


def test_truncation_keeps_the_answer(tokenizer, config: TradelabConfig) -> None:  # noqa: ANN001
    example = _examples(config, 1, 1)[0]
    full_ids, full_labels = encode_example(tokenizer, example, max_seq_len=512)
    ids, labels = encode_example(tokenizer, example, max_seq_len=40)
    answer = [t for t in full_labels if t != IGNORE_INDEX]
    assert len(ids) == 40 and [t for t in labels if t != IGNORE_INDEX] == answer
    assert ids == full_ids[-40:]


def test_collate_pads_right_with_ignored_labels() -> None:
    batch = collate([([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([8], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_loss_counts_response_tokens_only_and_weights() -> None:
    import torch

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5],
                           [IGNORE_INDEX, IGNORE_INDEX, 1, 2, 3, IGNORE_INDEX]])
    base = weighted_loss(logits, labels, torch.tensor([1.0, 1.0]))
    changed = logits.clone()
    changed[0, :2] = torch.randn(2, 11) * 10  # predictions made at prompt positions (except the last) do not count
    changed[1, :1] = torch.randn(1, 11) * 10
    assert torch.allclose(weighted_loss(changed, labels, torch.tensor([1.0, 1.0])), base)
    changed[0, 2, 3] += 5.0  # the last prompt position predicts the first answer token (id 3): it counts
    assert not torch.allclose(weighted_loss(changed, labels, torch.tensor([1.0, 1.0])), base)
    only_first = weighted_loss(logits, labels, torch.tensor([1.0, 0.0]))
    assert torch.allclose(only_first * 2, weighted_loss(logits[:1], labels[:1], torch.tensor([1.0])))
    assert torch.allclose(weighted_loss(logits, labels, torch.tensor([2.0, 2.0])), base * 2)


def test_bad_examples_rejected(tiny_advisor_dir: Path, config: TradelabConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no examples"):
        train_adapter(tiny_advisor_dir, [], config, out_dir=tmp_path / "a", seed=0)
    bad = [SFTExample([{"role": "user", "content": "x"}], "HOLD | 0.5 | x", weight=-1.0)]
    with pytest.raises(ConfigError, match="weight"):
        train_adapter(tiny_advisor_dir, bad, config, out_dir=tmp_path / "a", seed=0)


def _tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def small_cfg() -> TradelabConfig:
    return load_config(overrides={"llm.sft.batch_size": 4, "llm.sft.epochs": 1})


def test_train_saves_peft_adapter_deterministically(tiny_advisor_dir: Path, small_cfg: TradelabConfig,
                                                    tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    examples = _examples(small_cfg, 8, 2)
    a = train_adapter(tiny_advisor_dir, examples, small_cfg, out_dir=tmp_path / "a", seed=5)
    b = train_adapter(tiny_advisor_dir, examples, small_cfg, out_dir=tmp_path / "b", seed=5)
    c = train_adapter(tiny_advisor_dir, examples, small_cfg, out_dir=tmp_path / "c", seed=6)
    assert (a / "adapter_config.json").is_file() and (a / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((a / "adapter_config.json").read_text())
    assert adapter_config["r"] == small_cfg.llm.lora.r and adapter_config["lora_alpha"] == small_cfg.llm.lora.alpha
    info = json.loads((a / ADAPTER_INFO).read_text())
    assert info["training"]["steps"] == 2 and info["base_model"]["smoke_test_model"] is True
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert any(not torch.equal(ta[k], tc[k]) for k in ta)
    assert any("lora_B" in k and ta[k].abs().sum() > 0 for k in ta)  # B starts at zero: training moved it
    base = AutoModelForCausalLM.from_pretrained(tiny_advisor_dir, local_files_only=True)
    assert isinstance(PeftModel.from_pretrained(base, a), PeftModel)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_continue_from_adapter_and_replace_in_place(tiny_advisor_dir: Path, warm_adapter_dir: Path,
                                                    small_cfg: TradelabConfig, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "stage1_lora"
    examples = _examples(small_cfg, 4, 3)
    train_adapter(tiny_advisor_dir, examples, small_cfg, out_dir=out, seed=0, init_adapter=warm_adapter_dir)
    first = _tensors(out)
    warm = _tensors(warm_adapter_dir)
    assert first.keys() == warm.keys()
    assert any(not torch.equal(first[k], warm[k]) for k in first)
    assert max(float((first[k] - warm[k]).abs().max()) for k in first) < 0.5  # a refinement, not a restart
    train_adapter(tiny_advisor_dir, examples, small_cfg, out_dir=out, seed=0, init_adapter=out)
    assert any(not torch.equal(first[k], v) for k, v in _tensors(out).items())


def test_merge_matches_adapter(tiny_advisor_dir: Path, warm_adapter_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = merge_adapter(tiny_advisor_dir, warm_adapter_dir, tmp_path / "merged")
    assert (merged_dir / "config.json").is_file() and (merged_dir / "tokenizer.json").is_file()
    ids = torch.tensor([[1, 10, 20, 30, 40, 50]])
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_advisor_dir), warm_adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    with torch.inference_mode():
        assert torch.allclose(peft(ids).logits, merged(ids).logits, atol=1e-4)
        base = AutoModelForCausalLM.from_pretrained(tiny_advisor_dir).eval()
        assert not torch.allclose(base(ids).logits, merged(ids).logits, atol=1e-4)


def test_warm_start_parse_rate_on_held_out_contexts(advisor_root: Path, warm_adapter_dir: Path,
                                                    config: TradelabConfig) -> None:
    from tradelab.advisor.generate import Advisor

    held_out = random_contexts(200, config.llm.warm_start.seed + 1)
    advisor = Advisor(config, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    replies = advisor.advise(held_out)
    parse_rate = sum(r.advice.parse_ok for r in replies) / len(replies)
    allowed_rate = sum(r.advice.allowed for r in replies) / len(replies)
    assert parse_rate >= 0.95, (parse_rate, [r.text for r in replies if not r.advice.parse_ok][:5])
    assert allowed_rate >= 0.9
    info = json.loads((warm_adapter_dir / ADAPTER_INFO).read_text())
    assert info["training"]["epoch_loss"][-1] < info["training"]["epoch_loss"][0]


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_response_loss_equals_the_full_logit_loss_with_its_gradients(softcap: float | None) -> None:
    """Chunked response-only logits (chunks of 3 positions) give the same loss and gradients as full logits."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tradelab.advisor.loss import response_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
                                         final_logit_softcapping=softcap))
    input_ids = torch.randint(0, 97, (3, 9))
    mask = torch.ones_like(input_ids)
    mask[2, 6:] = 0  # right padding
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, 4:] = input_ids[0, 4:]
    labels[1, 2:7] = input_ids[1, 2:7]
    labels[2, 3:6] = input_ids[2, 3:6]
    weights = torch.tensor([1.0, 0.5, 2.0])

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    logits = model(input_ids=input_ids, attention_mask=mask).logits
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap  # what the model's forward does with the setting
    full = weighted_loss(logits, labels, weights)
    full_grads = grads(full)
    chunked = response_loss(model, input_ids, mask, labels, weights, chunk_tokens=3)
    assert torch.allclose(chunked, full, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads(chunked), full_grads, strict=True))


def test_a_shared_prefix_and_micro_batches_give_the_same_loss_and_gradients() -> None:
    """Rows that start alike run their common tokens once (keys/values broadcast), and a batch split into micro-batches
    adds up to the batch's loss: the same loss and LoRA gradients as every row run whole, up to float rounding."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tradelab.advisor.loss import response_loss, shared_prefix_length

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    shared = [5, 6, 7, 8, 9, 10]
    encoded = []
    for row in range(4):
        own = torch.randint(11, 97, (3 + row,)).tolist()
        answer = torch.randint(11, 97, (2,)).tolist()
        encoded.append((shared + own + answer, [IGNORE_INDEX] * (len(shared) + len(own)) + answer))
    assert shared_prefix_length(encoded) == len(shared)
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0])

    def loss_and_grads(parts: list[list[int]], prefix: bool) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        total = 0.0
        for part in parts:
            rows = collate([encoded[i] for i in part], pad_id=0)
            n = shared_prefix_length([encoded[i] for i in part]) if prefix else 0
            loss = response_loss(model, rows["input_ids"], rows["attention_mask"], rows["labels"], weights[part],
                                 chunk_tokens=4, prefix_tokens=n, batch_rows=4)
            loss.backward()
            total += float(loss.detach())
        return total, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    whole_loss, whole = loss_and_grads([[0, 1, 2, 3]], prefix=False)
    for parts in ([[0, 1, 2, 3]], [[0, 1], [2, 3]], [[0], [1, 2, 3]]):
        loss, grads = loss_and_grads(parts, prefix=True)
        assert abs(loss - whole_loss) < 1e-6
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, whole, strict=True))


def test_answers_end_with_the_end_of_turn_token_not_eos() -> None:
    """A template that closes turns with its own token (Gemma's <end_of_turn>) gets that token as the answer end."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tradelab.advisor.arch import answer_end_id, stop_token_ids
    from testmodels.families import GEMMA3_TEMPLATE

    specials = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    words = [*specials, *"abcdefghijklmnopqrstuvwxyz |.0123456789\n"]
    vocab = {t: i for i, t in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA3_TEMPLATE
    example = SFTExample([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "hold")
    ids, labels = encode_example(fast, example, max_seq_len=128)
    assert answer_end_id(fast) == vocab["<end_of_turn>"] == ids[-1] == labels[-1]
    assert stop_token_ids(fast) == [vocab["<eos>"], vocab["<end_of_turn>"]]


@pytest.mark.parametrize("cpu_threads,expected", [(1, 1), (0, 2)])
def test_training_runs_on_llm_sft_cpu_threads_and_restores_the_process_setting(
        tiny_advisor_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_threads: int,
        expected: int) -> None:
    import torch

    import tradelab.advisor.train as train

    config = load_config(overrides={"llm.sft.batch_size": 4, "llm.sft.epochs": 1,
                                    "llm.sft.cpu_threads": cpu_threads})
    seen: list[int] = []
    loss = train.response_loss

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - response_loss's own signature
        seen.append(torch.get_num_threads())
        return loss(*args, **kwargs)

    monkeypatch.setattr(train, "response_loss", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the process setting (Stage 1's ppo.torch_threads) the training's may differ from
    try:
        train_adapter(tiny_advisor_dir, _examples(config, 8, 4), config, out_dir=tmp_path / "a", seed=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 2 and set(seen) == {expected}
