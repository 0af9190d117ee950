"""Batched generation: batched == one at a time under greedy decoding, cache, stats, adapter swaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradelab.advisor.generate import Advisor
from tradelab.advisor.synth import random_contexts
from tradelab.config import TradelabConfig, load_config
from tradelab.fileio import sha256_dir


@pytest.fixture(scope="module")
def warm_advisor(advisor_root: Path, warm_adapter_dir: Path) -> Advisor:
    cfg = load_config(overrides={"llm.generation.cache": False, "llm.generation.batch_size": 16})
    return Advisor(cfg, advisor_root, adapter_path=warm_adapter_dir, device="cpu")


def test_batched_equals_one_at_a_time_with_adapter(warm_advisor: Advisor) -> None:
    contexts = random_contexts(20, 404)  # prompts of different lengths, so rows are really left-padded
    batched = [r.text for r in warm_advisor.advise(contexts)]
    single = [warm_advisor.advise([c])[0].text for c in contexts]
    assert batched == single
    assert len({len(m["content"]) for r in warm_advisor.advise(contexts[:5]) for m in r.messages}) > 1


def test_batched_equals_one_at_a_time_on_random_base(advisor_root: Path) -> None:
    """The untrained base writes long varied text: a strict check that padding never leaks into a row."""
    cfg = load_config(overrides={"llm.generation.cache": False, "llm.generation.max_new_tokens": 24})
    advisor = Advisor(cfg, advisor_root, device="cpu")
    contexts = random_contexts(6, 405)
    messages = [advisor.advise([c])[0].messages for c in contexts]
    batched = advisor.generate_texts(messages)
    assert batched == [advisor.generate_texts([m])[0] for m in messages]
    assert advisor.generate_texts(messages) == batched  # greedy is deterministic


def test_one_generate_call_per_batch_and_stats(advisor_root: Path, warm_adapter_dir: Path) -> None:
    cfg = load_config(overrides={"llm.generation.cache": False, "llm.generation.batch_size": 8})
    advisor = Advisor(cfg, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    replies = advisor.advise(random_contexts(20, 7))
    stats = advisor.stats.to_dict()
    assert len(replies) == 20 and stats["queries"] == 20
    assert stats["generate_calls"] == 3 and [c.batch_size for c in advisor.stats.calls] == [8, 8, 4]
    assert stats["generated_tokens"] > 0 and stats["tokens_per_s"] > 0 and stats["mean_latency_s"] > 0
    assert all(0 < c.new_tokens <= c.batch_size * cfg.llm.generation.max_new_tokens for c in advisor.stats.calls)
    assert stats["parse_ok_rate"] == sum(r.advice.parse_ok for r in replies) / 20


def test_replies_are_checked_against_the_mask(warm_advisor: Advisor) -> None:
    contexts = random_contexts(16, 99)
    for context in contexts:
        context["allowed_actions"] = ["DISABLE_TRAIL"]  # the teacher never learned to say this for flat contexts
    replies = warm_advisor.advise(contexts)
    flagged = [r for r in replies if r.advice.parse_ok and r.advice.action != "DISABLE_TRAIL"]
    assert flagged and all(r.advice.error == "disallowed_action" for r in flagged)


def test_message_inputs_are_not_mask_checked(warm_advisor: Advisor, config: TradelabConfig) -> None:
    from tradelab.advisor.prompts import build_messages

    context = random_contexts(1, 5)[0]
    from_messages = warm_advisor.advise([build_messages(context, config)])[0]
    from_context = warm_advisor.advise([context])[0]
    assert from_messages.text == from_context.text and from_messages.messages == from_context.messages


def test_cache_hits_on_discretised_context(advisor_root: Path, warm_adapter_dir: Path) -> None:
    cfg = load_config(overrides={"llm.generation.cache": True, "llm.generation.cache_max_entries": 100})
    advisor = Advisor(cfg, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    contexts = random_contexts(4, 17)
    first = advisor.advise(contexts)
    nudged = [dict(c, close=c["close"] + 0.25, timestamp="2030-01-02T10:00:00-05:00") for c in contexts]
    second = advisor.advise(nudged)
    assert not any(r.cached for r in first) and all(r.cached for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    assert advisor.stats.generate_calls == 1 and advisor.stats.to_dict()["cache_hit_rate"] == 0.5


def test_set_adapter_swaps_and_reports_sha(advisor_root: Path, warm_adapter_dir: Path, config: TradelabConfig) -> None:
    advisor = Advisor(config, advisor_root, device="cpu")
    contexts = random_contexts(6, 31)
    assert advisor.adapter is None
    base_texts = [r.text for r in advisor.advise(contexts)]
    advisor.set_adapter(warm_adapter_dir)
    assert advisor.adapter == {"path": str(warm_adapter_dir), "sha256": sha256_dir(warm_adapter_dir)}
    warm_replies = advisor.advise(contexts)
    assert [r.text for r in warm_replies] != base_texts
    assert all(r.adapter == advisor.adapter for r in warm_replies)
    advisor.set_adapter(warm_adapter_dir)  # reloading the same folder works (Stage 1 rewrites it in place)
    assert [r.text for r in advisor.advise(contexts)] == [r.text for r in warm_replies]
    advisor.set_adapter(None)
    assert advisor.adapter is None and [r.text for r in advisor.advise(contexts)] == base_texts


def test_sampling_is_seeded(advisor_root: Path, warm_adapter_dir: Path) -> None:
    cfg = load_config(overrides={"llm.generation.cache": False, "llm.generation.do_sample": True,
                                 "llm.generation.temperature": 1.5})
    advisor = Advisor(cfg, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    contexts = random_contexts(8, 3)
    a = [r.text for r in advisor.advise(contexts, seed=1)]
    assert a == [r.text for r in advisor.advise(contexts, seed=1)]
    assert a != [r.text for r in advisor.advise(contexts, seed=2)]


def test_prefix_cache_gives_the_same_answers_and_skips_the_system_turn(
    advisor_root: Path, warm_adapter_dir: Path
) -> None:
    on = load_config(overrides={"llm.generation.cache": False, "llm.generation.prefix_cache": True})
    off = load_config(overrides={"llm.generation.cache": False, "llm.generation.prefix_cache": False})
    cached = Advisor(on, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    plain = Advisor(off, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    contexts = random_contexts(12, 808)
    assert [r.text for r in cached.advise(contexts)] == [r.text for r in plain.advise(contexts)]
    assert [cached.advise([c])[0].text for c in contexts[:4]] == [r.text for r in plain.advise(contexts[:4])]
    tokenizer = cached.tokenizer
    system_turn = tokenizer.apply_chat_template(cached.advise(contexts[:1])[0].messages[:1], tokenize=False)
    system_tokens = len(tokenizer(system_turn, add_special_tokens=False)["input_ids"])
    shared = system_tokens + 1  # the system turn and the next turn's <|user|> header
    calls = cached.stats.calls
    assert system_tokens > 10 and [c.prefix_tokens for c in calls[:2]] == [12 * shared, shared]
    assert cached.stats.to_dict()["prefix_cache_shared_tokens"] == shared
    assert cached.stats.to_dict()["prefix_cache_off_reason"] is None
    assert plain.stats.to_dict()["prefix_cache_off_reason"] == "llm.generation.prefix_cache is false"
    assert all(c.prefix_tokens == 0 for c in plain.stats.calls)
    assert cached.stats.to_dict()["prefix_cache_tokens"] == sum(c.prefix_tokens for c in calls)


def test_prefix_cache_on_the_random_base_and_with_different_system_turns(advisor_root: Path) -> None:
    """The untrained base writes long varied text, so a wrong position or a leaked pad would change it."""
    from tradelab.advisor.prompts import build_messages

    on = load_config(overrides={"llm.generation.cache": False, "llm.generation.max_new_tokens": 24})
    off = load_config(overrides={"llm.generation.cache": False, "llm.generation.max_new_tokens": 24,
                                 "llm.generation.prefix_cache": False})
    cached, plain = Advisor(on, advisor_root, device="cpu"), Advisor(off, advisor_root, device="cpu")
    messages = [build_messages(c, on) for c in random_contexts(6, 809)]
    assert cached.generate_texts(messages) == plain.generate_texts(messages)
    assert cached.stats.calls[-1].prefix_tokens > 0
    mixed = [messages[0], [dict(messages[1][0], content="Answer briefly."), messages[1][1]]]
    assert cached.generate_texts(mixed) == plain.generate_texts(mixed)
    assert cached.stats.calls[-1].prefix_tokens == 0, "rows with different system turns share no prefix"


def test_prefix_cache_follows_adapter_changes(advisor_root: Path, warm_adapter_dir: Path,
                                              config: TradelabConfig) -> None:
    contexts = random_contexts(5, 810)
    swapped = Advisor(config, advisor_root, device="cpu")
    base_texts = [r.text for r in swapped.advise(contexts)]  # fills the prefix cache under the base weights
    swapped.set_adapter(warm_adapter_dir)
    fresh = Advisor(config, advisor_root, adapter_path=warm_adapter_dir, device="cpu")
    assert [r.text for r in swapped.advise(contexts)] == [r.text for r in fresh.advise(contexts)] != base_texts


def test_cpu_models_use_native_gqa_attention_with_identical_logits(advisor_root: Path, config: TradelabConfig) -> None:
    import torch

    from tradelab.advisor import attention
    from tradelab.advisor.prompts import build_messages, render_chat

    advisor = Advisor(config, advisor_root, device="cpu")
    model, tokenizer = advisor.model, advisor.tokenizer
    assert model.config._attn_implementation == attention.NAME
    assert model.config.num_key_value_heads < model.config.num_attention_heads, "the tiny advisor uses GQA"
    prompts = [render_chat(tokenizer, build_messages(c, config)) for c in random_contexts(4, 811)]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (batch["attention_mask"] == 0).any(), "rows are padded, so the attention takes a mask"
    with torch.inference_mode():
        native = model(**batch).logits
        model.set_attn_implementation("sdpa")
        repeated = model(**batch).logits
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(native[keep], repeated[keep], rtol=1e-5, atol=1e-5)


def test_cpu_threads_apply_per_call_and_restore_the_process_setting(advisor_root: Path) -> None:
    import torch

    overrides = {"llm.generation.cache": False, "llm.generation.max_new_tokens": 12}
    own = Advisor(load_config(overrides={**overrides, "llm.generation.cpu_threads": 0}), advisor_root, device="cpu")
    one = Advisor(load_config(overrides={**overrides, "llm.generation.cpu_threads": 1}), advisor_root, device="cpu")
    contexts = random_contexts(5, 406)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a process setting the per-call one differs from
    seen: list[int] = []
    hook = one.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        texts = [r.text for r in one.advise(contexts)]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # the same arithmetic as one thread for the whole process: the same answers
        assert texts == [r.text for r in own.advise(contexts)]
    finally:
        hook.remove()
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}


def test_side_margins_follow_the_greedy_side(warm_advisor: Advisor, config: TradelabConfig) -> None:
    """BUY-minus-SELL log-prob margins (the records bench's cue check) agree with the side a greedy answer takes."""
    import numpy as np

    from tradelab.advisor.prompts import build_messages
    from tradelab.loop.probe import ProbeSet, side_margins

    contexts = [c for c in random_contexts(64, 21) if c["position"]["side"] == "flat"]
    for context in contexts:
        context["allowed_actions"] = ["HOLD", "BUY", "SELL"]
    messages = [build_messages(c, config) for c in contexts]
    probe = ProbeSet(bar_indices=list(range(len(contexts))), contexts=contexts, messages=messages,
                     ground_truths=["{}"] * len(contexts), moves_points=np.zeros(len(contexts)),
                     session_ids=np.zeros(len(contexts), dtype=np.int64))
    assert all(len(warm_advisor.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1
               for word in ("BUY", "SELL"))  # one token each: the margin is the first answer token's
    margins = side_margins(warm_advisor, probe)
    sides = [r.advice.action for r in warm_advisor.advise(messages)]
    buy, sell = [m for m, s in zip(margins, sides) if s == "BUY"], [m for m, s in zip(margins, sides) if s == "SELL"]
    assert buy or sell, f"the warm start answered {set(sides)}: no side to compare"
    assert all(m > 0.0 for m in buy) and all(m < 0.0 for m in sell)
