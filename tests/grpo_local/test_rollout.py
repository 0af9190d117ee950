"""Rollouts: think markers and soft/discrete switching (scripted model), KV-cache consistency (tiny random Llama)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tradelab.grpo.local.loss import ScoreSpec, rebuild_inputs, step_scores
from tradelab.grpo.local.rollout import SamplingSpec, StopSpec, generate, mixture_weights

PAD, EOS, OPEN, CLOSE = 0, 2, 3, 4
SOFT = SamplingSpec(temperature=1.0, top_k=0, top_p=0.95, soft_slots=3, max_think_tokens=10)


class ScriptedLM(torch.nn.Module):
    """Puts almost all probability on ``script[k]`` at answer step k, whatever the inputs (a KV-cache stand-in)."""

    def __init__(self, script: list[int], prompt_lens: list[int], vocab: int = 32) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 4)
        self.script, self.vocab = script, vocab
        self.prompt_lens = torch.tensor(prompt_lens)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=True,
                logits_to_keep=0):
        step = (position_ids - (self.prompt_lens[:, None] - 1)).clamp(0, len(self.script) - 1)
        logits = torch.full((*position_ids.shape, self.vocab), -30.0)
        logits.scatter_(-1, torch.tensor(self.script)[step][..., None], 30.0)
        return SimpleNamespace(logits=logits, past_key_values=None)


def _stop(start: tuple[int, ...] = (OPEN,), max_new: int = 12) -> StopSpec:
    return StopSpec(pad_id=PAD, stop_ids=frozenset({EOS}), think_end_ids=(CLOSE,), max_new_tokens=max_new,
                    think_start_ids=start)


def _run(script: list[int], prompts: list[list[int]], spec: SamplingSpec, stop: StopSpec):
    model = ScriptedLM(script, [len(p) for p in prompts])
    return generate(model, prompts, spec, stop, torch.Generator().manual_seed(0))


def test_discrete_answers_stop_at_eos_with_left_padded_prompts() -> None:
    batch = _run([7, 8, EOS, 9], [[1, 5, 6], [1, 5]], SamplingSpec(1.0, 0, 0.95), _stop())
    assert batch.prompt_ids.tolist() == [[1, 5, 6], [PAD, 1, 5]]
    assert batch.prompt_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch.tokens.tolist() == [[7, 8, EOS]] * 2
    assert batch.mask.tolist() == [[1, 1, 1]] * 2
    assert not batch.soft.any()


def test_soft_steps_run_between_think_markers() -> None:
    script = [OPEN, 10, 11, 12, CLOSE, 20, 21, EOS]
    batch = _run(script, [[1, 5]], SOFT, _stop())
    assert batch.tokens[0].tolist() == script
    assert batch.soft[0].tolist() == [False, True, True, True, True, False, False, False]
    # the step that emits the think-end marker feeds the marker itself, not a mixture
    assert batch.mix[0].tolist() == [False, True, True, True, False, False, False, False]
    assert batch.slot_ids[0, 1, 0].item() == 10 and batch.slot_mask[0, 1].tolist() == [True, False, False]


def test_think_budget_turns_decoding_discrete_for_good() -> None:
    spec = SamplingSpec(1.0, 0, 0.95, soft_slots=3, max_think_tokens=2)
    batch = _run([OPEN, 10, 11, 12, OPEN, 13, EOS], [[1, 5]], spec, _stop())
    assert batch.soft[0].tolist() == [False, True, True, False, False, False, False]
    assert batch.mix[0].tolist() == [False, True, True, False, False, False, False]


def test_prompt_ending_with_think_start_or_empty_marker_starts_soft_at_once() -> None:
    spec = SamplingSpec(1.0, 0, 0.95, soft_slots=3, max_think_tokens=2)
    opened = _run([10, 11, 12, EOS], [[1, OPEN]], spec, _stop())
    assert opened.soft[0].tolist() == [True, True, False, False]
    no_marker = _run([10, 11, 12, EOS], [[1, 5]], spec, _stop(start=()))
    assert no_marker.soft[0].tolist() == [True, True, False, False]
    closed = _run([10, 11, 12, EOS], [[1, 5]], spec, _stop())
    assert not closed.soft.any()


@pytest.fixture(scope="module")
def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 10, 11], [1, 12, 13, 14]]


def test_same_seed_same_rollout(tiny_llama: torch.nn.Module) -> None:
    spec = SamplingSpec(1.0, 0, 1.0, soft_slots=4, max_think_tokens=6)
    stop = _stop(start=(), max_new=16)
    a = generate(tiny_llama, PROMPTS, spec, stop, torch.Generator().manual_seed(5))
    b = generate(tiny_llama, PROMPTS, spec, stop, torch.Generator().manual_seed(5))
    c = generate(tiny_llama, PROMPTS, spec, stop, torch.Generator().manual_seed(6))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.noisy_logits, b.noisy_logits)
    assert not torch.equal(a.noisy_logits, c.noisy_logits)


def test_greedy_cached_decoding_matches_a_full_forward(tiny_llama: torch.nn.Module) -> None:
    batch = generate(tiny_llama, PROMPTS, SamplingSpec(1.0, 0, 1.0, greedy=True), _stop(start=(), max_new=10))
    embeds, attn, positions = rebuild_inputs(tiny_llama.get_input_embeddings(), batch, tau=0.1)
    with torch.no_grad():
        logits = tiny_llama(inputs_embeds=embeds, attention_mask=attn, position_ids=positions).logits
    prompt_len = batch.prompt_ids.shape[1]
    argmax = logits[:, prompt_len - 1:].argmax(-1)
    assert torch.equal(argmax[batch.mask.bool()], batch.tokens[batch.mask.bool()])


def test_soft_rollout_is_rebuilt_exactly_for_training(tiny_llama: torch.nn.Module) -> None:
    """Slots and noise recorded in the cached loop agree with a full forward over the rebuilt mixture inputs."""
    spec = SamplingSpec(1.0, 0, 1.0, soft_slots=4, max_think_tokens=6, gumbel_tau=0.5)
    no_stops = StopSpec(pad_id=PAD, stop_ids=frozenset(), think_end_ids=(), max_new_tokens=12)
    batch = generate(tiny_llama, PROMPTS, spec, no_stops, torch.Generator().manual_seed(1))
    soft = batch.soft
    assert soft[:, :6].all() and not soft[:, 6:].any() and batch.mix[:, :6].all()
    embeds, attn, positions = rebuild_inputs(tiny_llama.get_input_embeddings(), batch, tau=0.5)
    with torch.no_grad():
        logits = tiny_llama(inputs_embeds=embeds, attention_mask=attn, position_ids=positions).logits
    probs = torch.softmax(logits[:, batch.prompt_ids.shape[1] - 1:], -1)
    top_q, top_ids = torch.topk(probs, 4, dim=-1)
    assert torch.equal(top_ids[soft], batch.slot_ids[soft])
    q = top_q[soft] / top_q[soft].sum(-1, keepdim=True)
    noise = batch.noisy_logits[soft] - torch.log(q + 1e-6)  # = lambda * clamp(g) with lambda = 1
    assert float(noise.min()) >= -1.5 - 1e-4 and float(noise.max()) <= 3.0 + 1e-4
    picked = batch.slot_ids[soft].gather(-1, batch.noisy_logits[soft].argmax(-1, keepdim=True)).squeeze(-1)
    assert torch.equal(picked, batch.tokens[soft])
    weights = mixture_weights(batch.noisy_logits, batch.slot_mask, 0.5)[soft]
    assert torch.allclose(weights.sum(-1), torch.ones(int(soft.sum())))


def test_step_scores_before_an_update_give_ratio_one(tiny_llama: torch.nn.Module) -> None:
    spec = SamplingSpec(1.0, 0, 0.95, soft_slots=4, max_think_tokens=4)
    batch = generate(tiny_llama, PROMPTS, spec, _stop(start=(), max_new=10), torch.Generator().manual_seed(2))
    score_spec = ScoreSpec(temperature=1.0, gumbel_tau=0.1, noise_min=-1.5, noise_max=3.0)
    with torch.no_grad():
        first = step_scores(tiny_llama, batch, score_spec)
        second = step_scores(tiny_llama, batch.rows(torch.arange(3)), score_spec)
    assert torch.equal(first, second)
    assert torch.isfinite(first[batch.mask.bool()]).all()
