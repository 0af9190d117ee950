"""Which groups carry a signal, and DAPO dynamic sampling: on hand-made groups and a stand-in model.

The sampler's own logic (rounds, prompt draws, which groups are kept, the cap) runs for real; only the generation and
the reward are stand-ins, so each prompt's group is known to agree or disagree before the test runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tradelab.config import load_config
from tradelab.grpo.local import step as step_mod
from tradelab.grpo.local.data import PromptRow
from tradelab.grpo.local.groups import GroupTally, RunGroupSignal, group_reward_stds, has_signal
from tradelab.grpo.local.rollout import RolloutBatch, StopSpec, concat_batches
from tradelab.grpo.local.step import StepContext, run_step, sample_groups


def test_zero_variance_share_and_group_std_on_hand_made_groups() -> None:
    rewards = [1.0, 1.0, 1.0, 1.0,  # agree: no signal
               0.0, 1.0, 0.0, 1.0,  # disagree
               0.5, 0.5, 0.5, 0.5,  # agree
               -1.0, -1.0, -1.0, -1.0 + 1e-12]  # equal within the tolerance: no signal
    assert has_signal(rewards, 4).tolist() == [False, True, False, False]
    np.testing.assert_allclose(group_reward_stds(rewards, 4)[:3], [0.0, np.std([0, 1, 0, 1], ddof=1), 0.0])
    tally = GroupTally()
    tally.add(rewards, 4)
    assert tally.sampled == 4 and tally.zero_variance == 3 and tally.zero_variance_share == 0.75
    assert tally.reward_std_mean == pytest.approx(np.std([0, 1, 0, 1], ddof=1) / 4, abs=1e-9)
    tally.add([2.0, 3.0], 2)  # a second round of one disagreeing group of 2
    assert tally.sampled == 5 and tally.zero_variance_share == pytest.approx(3 / 5) and tally.rounds == 2
    run = RunGroupSignal()
    run.add(tally.to_dict())
    assert run.to_dict()["zero_variance_share"] == pytest.approx(0.6) and run.to_dict()["steps"] == 1
    with pytest.raises(ValueError):
        group_reward_stds([1.0, 2.0, 3.0], 2)


# ----------------------------------------------------------------------------------- the sampler on stand-ins
GROUP = 4
PAD = 0


def _rows(kinds: list[str]) -> list[PromptRow]:
    """Prompt ``i`` is the single token ``i + 1``; its kind says whether its group will agree."""
    return [PromptRow([i + 1], "tradelab/NQ", kind, {"index": i}) for i, kind in enumerate(kinds)]


def _fake_generate(model: Any, prompts: list[list[int]], spec: Any, stop: StopSpec, generator: Any) -> RolloutBatch:
    """Answer row r of prompt p with the tokens [p, r % GROUP + 1]: each answer knows its prompt and its place."""
    rows = len(prompts)
    tokens = torch.tensor([[p[0], r % GROUP + 1] for r, p in enumerate(prompts)])
    zeros = torch.zeros((rows, 2), dtype=torch.bool)
    return RolloutBatch(prompt_ids=torch.tensor(prompts), prompt_mask=torch.ones((rows, 1), dtype=torch.long),
                        tokens=tokens, mask=torch.ones((rows, 2), dtype=torch.long), soft=zeros, mix=zeros,
                        slot_ids=torch.zeros((rows, 2, 1), dtype=torch.long),
                        noisy_logits=torch.zeros((rows, 2, 1)), slot_mask=torch.zeros((rows, 2, 1), dtype=torch.bool))


def _fake_decode(tokenizer: Any, batch: RolloutBatch, stop: StopSpec) -> list[str]:
    return [f"{p} {k}" for p, k in batch.tokens.tolist()]


def _reward(data_source: str, text: str, ground_truth: str, extra_info: Any = None) -> dict[str, float]:
    """'agree' prompts score 1 for every answer; 'differ' prompts score the answer's place in its group."""
    place = int(text.split()[1])
    return {"score": 1.0 if ground_truth == "agree" else float(place), "format": 1.0, "blocked": 0.0}


def _context(monkeypatch: pytest.MonkeyPatch, *, prompts: int, rounds: int, enabled: bool = True) -> StepContext:
    monkeypatch.setattr(step_mod, "generate", _fake_generate)
    monkeypatch.setattr(step_mod, "decode_answers", _fake_decode)
    config = load_config(overrides={
        "grpo_local.mode": "discrete", "grpo_local.rollout.group_size": GROUP,
        "grpo_local.optim.prompts_per_step": prompts, "grpo_local.dynamic_sampling.enabled": enabled,
        "grpo_local.dynamic_sampling.max_rounds": rounds})
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1.0)
    stop = StopSpec(pad_id=PAD, stop_ids=frozenset({99}), think_end_ids=(), max_new_tokens=2)
    return StepContext(model, None, config.grpo_local, "discrete", stop, optimizer, scheduler,
                       list(model.parameters()), _reward)


def test_dynamic_sampling_fills_the_batch_with_groups_that_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = ["agree"] * 12 + ["differ"] * 4  # three prompts in four agree: the first round cannot fill 3 groups
    ctx = _context(monkeypatch, prompts=3, rounds=10)
    sampled = sample_groups(ctx, _rows(kinds), step=0)
    tally = sampled.tally
    assert tally.kept == 3 and not tally.capped and tally.rounds >= 2
    assert tally.sampled == 3 * tally.rounds and 0 < tally.zero_variance <= tally.sampled - tally.kept
    kept_prompts = sampled.batch.tokens[:, 0].reshape(-1, GROUP)
    assert sampled.batch.size == 3 * GROUP
    assert all(kinds[int(p[0]) - 1] == "differ" and len(set(p.tolist())) == 1 for p in kept_prompts)
    assert len(set(kept_prompts[:, 0].tolist())) == 3  # later rounds drew prompts the step had not drawn yet
    assert all(np.ptp(sampled.rewards[g * GROUP:(g + 1) * GROUP]) > 0 for g in range(3))
    # The same step samples the same groups again (each round has its own seeded stream).
    again = sample_groups(ctx, _rows(kinds), step=0)
    assert torch.equal(again.batch.tokens, sampled.batch.tokens) and again.tally.rounds == tally.rounds
    # Without dynamic sampling the first round is the batch, agreeing groups included.
    plain = sample_groups(_context(monkeypatch, prompts=3, rounds=10, enabled=False), _rows(kinds), step=0)
    assert plain.tally.rounds == 1 and plain.batch.size == 3 * GROUP and plain.tally.kept == 3


def test_dynamic_sampling_stops_at_its_cap_and_a_step_without_signal_makes_no_update(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(monkeypatch, prompts=2, rounds=3)
    sampled = sample_groups(ctx, _rows(["agree"] * 8), step=4)
    assert sampled.tally.rounds == 3 and sampled.tally.kept == 0 and sampled.tally.capped
    assert sampled.batch is None and sampled.tally.zero_variance_share == 1.0
    before = [p.detach().clone() for p in ctx.params]
    metrics = run_step(ctx, _rows(["agree"] * 8), step=4)
    assert metrics["groups"]["capped"] == 1 and metrics["groups"]["rounds"] == 3 and metrics["loss"] is None
    assert not metrics["skipped"] and all(torch.equal(a, b) for a, b in zip(before, ctx.params))
    # One disagreeing prompt among many: the cap ends the step with the one group it found.
    partial = sample_groups(ctx, _rows(["agree"] * 7 + ["differ"]), step=1)
    assert partial.tally.rounds <= 3 and partial.tally.kept <= 1
    assert partial.tally.capped == (partial.tally.kept < 2)


def _batch(prompt: list[int], answer: list[int]) -> RolloutBatch:
    width = len(answer)
    zeros = torch.zeros((1, width), dtype=torch.bool)
    return RolloutBatch(prompt_ids=torch.tensor([prompt]), prompt_mask=torch.ones((1, len(prompt)), dtype=torch.long),
                        tokens=torch.tensor([answer]), mask=torch.ones((1, width), dtype=torch.long), soft=zeros,
                        mix=zeros, slot_ids=torch.ones((1, width, 1), dtype=torch.long),
                        noisy_logits=torch.ones((1, width, 1)), slot_mask=torch.ones((1, width, 1), dtype=torch.bool))


def test_concat_batches_pads_prompts_left_and_answers_right() -> None:
    merged = concat_batches([_batch([5], [8, 9, 10]), _batch([6, 7], [11])], PAD)
    assert merged.prompt_ids.tolist() == [[PAD, 5], [6, 7]] and merged.prompt_mask.tolist() == [[0, 1], [1, 1]]
    assert merged.tokens.tolist() == [[8, 9, 10], [11, PAD, PAD]] and merged.mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert merged.slot_mask[1].flatten().tolist() == [True, False, False]
    assert merged.noisy_logits[1].flatten().tolist() == [1.0, 0.0, 0.0] and merged.size == 2


# ------------------------------------------------------------------------------ prompts balanced between sides
SIDES = ["BUY"] * 66 + ["SELL"] * 67 + ["tied"] * 22 + [None] * 10  # the SmolLM2 edge-0.2 split's shape


def test_a_sides_balanced_draw_holds_as_many_buy_as_sell_rows_and_the_others_at_their_share() -> None:
    from tradelab.grpo.local.step import choose_prompts

    n = len(SIDES)
    drawn = {"BUY": 0, "SELL": 0, "other": 0}
    for step in range(500):
        first = choose_prompts(n, 4, 0, step, 0, (), SIDES)
        second = choose_prompts(n, 4, 0, step, 1, first, SIDES)
        assert not set(first) & set(second)  # a later round still prefers prompts the step has not drawn
        for picks in (first, second):
            kinds = [SIDES[i] for i in picks]
            assert kinds.count("BUY") == kinds.count("SELL")  # even count: exact in every round
            drawn["other"] += sum(k not in ("BUY", "SELL") for k in kinds)
        assert choose_prompts(n, 4, 0, step, 0, (), SIDES) == first  # seeded by (seed, step, round)
    assert drawn["other"] / (500 * 8) == pytest.approx(32 / n, abs=0.03)
    # An odd count: the sides differ by at most one row, and by nothing on average.
    odd = [[SIDES[i] for i in choose_prompts(n, 5, 3, step, 0, (), SIDES)] for step in range(2000)]
    assert all(abs(k.count("BUY") - k.count("SELL")) <= 1 for k in odd)
    buys, sells = sum(k.count("BUY") for k in odd), sum(k.count("SELL") for k in odd)
    assert abs(buys - sells) / (buys + sells) < 0.03
    # A uniform draw on the same split leans: some steps hold three rows of one side and none of the other.
    uniform = [[SIDES[i] for i in choose_prompts(n, 4, 0, step, 0)] for step in range(200)]
    assert any(abs(k.count("BUY") - k.count("SELL")) >= 3 for k in uniform)


def test_a_split_without_one_side_is_drawn_uniformly_and_misaligned_sides_are_refused() -> None:
    from tradelab.grpo.local.step import choose_prompts

    only_sell = ["SELL"] * 20 + ["tied"] * 5
    for step in range(5):
        assert choose_prompts(25, 4, 0, step, 0, (), only_sell) == choose_prompts(25, 4, 0, step, 0)
    with pytest.raises(ValueError, match="3 sides for 25 rows"):
        choose_prompts(25, 4, 0, 0, 0, (), ["BUY", "SELL", None])


def test_sides_balanced_sampling_needs_the_rows_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(monkeypatch, prompts=2, rounds=1, enabled=False)
    ctx.cfg = ctx.cfg.model_copy(update={"optim": ctx.cfg.optim.model_copy(update={"prompt_draw": "sides_balanced"})})
    kinds = ["differ"] * 8
    with pytest.raises(ValueError, match="no row sides"):
        sample_groups(ctx, _rows(kinds), step=0)
    sides = ["BUY"] * 6 + ["SELL"] * 2
    for step in range(10):
        sampled = sample_groups(ctx, _rows(kinds), step=step, sides=sides)
        prompts = sampled.batch.tokens[:, 0].reshape(-1, GROUP)[:, 0].tolist()
        assert sorted(sides[p - 1] for p in prompts) == ["BUY", "SELL"]
