"""Prompts (point-in-time, from the context only, template from config), the teacher and the synthetic contexts."""

from __future__ import annotations

import copy
import json
import re
import typing
from pathlib import Path

import pytest

from tradelab.advisor.prompts import build_messages, context_key, prompt_fields, template_hash
from tradelab.advisor.synth import random_contexts
from tradelab.advisor.teacher import teacher_decision, teacher_response
from tradelab.config import TradelabConfig, load_config
from tradelab.config.llm_schema import PROMPT_PLACEHOLDERS
from tradelab.core import ACTION_IDS
from tradelab.core.context import MarketContext
from tradelab.core.parse import parse_advice
from tradelab.errors import ConfigError

FORWARD_WORDS = ("forward", "future", "next", "outcome", "label", "reward")


def test_messages_are_system_then_user_from_config(config: TradelabConfig) -> None:
    context = random_contexts(1, 3)[0]
    messages = build_messages(context, config)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == config.llm.prompts.system
    assert messages[1]["content"] == config.llm.prompts.user_template.format(**prompt_fields(context))
    assert build_messages(context, config.llm) == messages


def test_prompt_shows_every_descriptor(config: TradelabConfig) -> None:
    context = random_contexts(1, 11)[0]
    context["position"].update(side="long", entry_price=18000.25, stop=17980.5, target=18040.75, trail_on=True,
                               unrealized_pnl=123.4, bars_in_trade=7)
    context["allowed_actions"] = ["HOLD", "MOVE_TO_BE", "DISABLE_TRAIL"]
    context["recent_trades"] = [{"side": "short", "pnl": -300.0, "r_multiple": -1.0, "exit_reason": "stop"}]
    user = build_messages(context, config)[1]["content"]
    for text in (f"{context['close']:.2f}", context["trend"], context["volatility"], f"{context['momentum']:.0f}",
                 f"{context['vwap_distance_atr']:+.1f}", "long entry 18000.25 stop 17980.50 target 18040.75",
                 "trail on", "upnl +123", f"{context['account']['drawdown_buffer']:.0f}", "short -1.0R stop",
                 "HOLD MOVE_TO_BE DISABLE_TRAIL"):
        assert text in user, (text, user)


def test_context_type_has_no_forward_keys() -> None:
    def keys(tp: type) -> set[str]:
        hints = typing.get_type_hints(tp)
        found = set(hints)
        for hint in hints.values():
            if isinstance(hint, type) and hasattr(hint, "__annotations__") and hint is not str:
                found |= keys(hint)
        return found

    names = keys(MarketContext)
    assert "position" in names and "drawdown_buffer" in names
    assert not [n for n in names if any(w in n for w in FORWARD_WORDS)]


def test_forward_values_never_reach_the_prompt(config: TradelabConfig) -> None:
    """Extra keys (what an experience record adds after the bar) change nothing and never appear."""
    for context in random_contexts(20, 5):
        base = build_messages(context, config)
        leaky = copy.deepcopy(context)
        leaky["forward"] = {"close": [98765.43, 87654.32], "high": [99999.99]}  # type: ignore[typeddict-unknown-key]
        leaky["outcome"] = {"pnl": 4321.09}  # type: ignore[typeddict-unknown-key]
        leaky["next_close"] = 77777.77  # type: ignore[typeddict-unknown-key]
        assert build_messages(leaky, config) == base
        text = " ".join(m["content"] for m in base)
        assert not any(v in text for v in ("98765", "87654", "99999", "4321", "77777"))


def test_prompt_depends_on_context_values(config: TradelabConfig) -> None:
    """Each rendered number comes from the context: changing the context changes the prompt."""
    context = random_contexts(1, 8)[0]
    base = build_messages(context, config)[1]["content"]
    changed = copy.deepcopy(context)
    changed["close"] = context["close"] + 123.0
    assert build_messages(changed, config)[1]["content"] != base


def _env_prompts(root: Path, config: TradelabConfig, steps: int) -> list[list[dict[str, str]]]:
    """Prompts along one scripted episode (enter when allowed, then manage) from bar 0 of the train split."""
    from tradelab.env import make_env

    env = make_env("NQ", root, split="train", seed=3, config=config)
    _, info = env.reset(seed=3)
    prompts = []
    script = ["BUY", "HOLD", "HOLD", "MOVE_TO_BE", "ENABLE_TRAIL", "HOLD", "SELL"]
    for step in range(steps):
        prompts.append(build_messages(info["market_context"], config))
        allowed = info["market_context"]["allowed_actions"]
        wanted = script[step % len(script)]
        action = ACTION_IDS[wanted if wanted in allowed else "HOLD"]
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return prompts


@pytest.mark.slow
def test_env_prompts_are_point_in_time(nq_workspace: Path, tmp_path: Path) -> None:
    """Prompts at bar t are the same whether the data ends just after t or continues for weeks (prefix vs full)."""
    from tradelab.marketdata import load_bars
    from tradelab.paths import Workspace

    config = load_config(overrides={"env.random_start": False})
    bars = load_bars(nq_workspace, "NQ")
    sessions = bars["timestamp"].dt.tz_convert("America/New_York").dt.date
    cut = int((sessions <= sorted(sessions.unique())[9]).sum())  # ten sessions: enough to split, far less than all
    prefix_path = Workspace.at(tmp_path).bars_path("NQ")
    prefix_path.parent.mkdir(parents=True)
    bars.iloc[:cut].to_parquet(prefix_path)
    steps = 300
    full, prefix = _env_prompts(nq_workspace, config, steps), _env_prompts(tmp_path, config, steps)
    assert len(full) == len(prefix) > 50
    assert full == prefix


def test_template_placeholders_validated() -> None:
    with pytest.raises(ConfigError, match="unknown placeholders"):
        load_config(overrides={"llm.prompts.user_template": "{close} {future_close} {allowed_actions}"})
    with pytest.raises(ConfigError, match="allowed_actions"):
        load_config(overrides={"llm.prompts.user_template": "{close}"})
    cfg = load_config(overrides={"llm.prompts.user_template": "close {close} allowed {allowed_actions}"})
    context = random_contexts(1, 2)[0]
    assert build_messages(context, cfg)[1]["content"] == (
        f"close {context['close']:.2f} allowed {' '.join(context['allowed_actions'])}"
    )
    assert template_hash(cfg) != template_hash(load_config())


def test_every_placeholder_renders() -> None:
    fields = prompt_fields(random_contexts(1, 4)[0])
    assert set(fields) == set(PROMPT_PLACEHOLDERS)
    assert all(isinstance(v, str) and v for v in fields.values())


def test_context_key_discretises(config: TradelabConfig) -> None:
    context = random_contexts(1, 9)[0]
    nudged = copy.deepcopy(context)
    nudged["close"] += 0.25
    nudged["timestamp"] = "2030-01-01T10:00:00-05:00"
    assert context_key(nudged) == context_key(context)
    flipped = copy.deepcopy(context)
    flipped["trend"] = "down" if context["trend"] != "down" else "up"
    assert context_key(flipped) != context_key(context)


def test_synthetic_contexts_are_seeded() -> None:
    assert random_contexts(30, 1) == random_contexts(30, 1)
    assert random_contexts(30, 1) != random_contexts(30, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_teacher_answers_parse_and_respect_mask(seed: int) -> None:
    contexts = random_contexts(300, seed)
    actions = set()
    for context in contexts:
        text = teacher_response(context)
        assert re.fullmatch(r"[A-Z_]+ \| \d\.\d\d \| [^|\n]+", text), text
        advice = parse_advice(text)
        assert advice.parse_ok and advice.action in context["allowed_actions"]
        assert teacher_response(copy.deepcopy(context)) == text
        actions.add(advice.action)
    assert {"HOLD", "BUY", "SELL", "MOVE_TO_BE"} <= actions


def test_teacher_follows_its_rules() -> None:
    context = random_contexts(1, 0)[0]
    context.update(trend="up", momentum=60.0, vwap_distance_atr=1.0, minutes_to_close=200,
                   allowed_actions=["HOLD", "BUY", "SELL"])
    context["position"].update(side="flat", entry_price=None, stop=None, target=None, trail_on=False)
    context["account"]["drawdown_buffer"] = 2000.0
    assert teacher_decision(context)[0] == "BUY"
    context["allowed_actions"] = ["HOLD"]
    assert teacher_decision(context)[0] == "HOLD"
    context.update(allowed_actions=["HOLD", "BUY", "SELL"], trend="down", return_30_bars=0.002)
    action, confidence, _ = teacher_decision(context)
    assert action == "SELL" and confidence == 0.55  # against every other cue: the floor of a view
    context["trend"] = "flat"
    assert teacher_decision(context)[0] == "HOLD"


def test_teacher_takes_a_side_on_most_flat_contexts() -> None:
    """A warm start taught HOLD as the flat default never trades (the collapse issue 12 found): 82% HOLD before."""
    flat = [c for c in random_contexts(600, 5) if c["position"]["side"] == "flat" and "BUY" in c["allowed_actions"]]
    directional = sum(teacher_decision(c)[0] in ("BUY", "SELL") for c in flat)
    assert directional / len(flat) > 0.5


def test_the_compact_template_keeps_the_scoring_path(config: TradelabConfig) -> None:
    """The compact prompt changes what the advisor reads and nothing that scores it: the ground truth, the reward of
    any answer and the hindsight label of a record are the same whichever template rendered its prompt."""
    from stage2_factory import make_record

    from tradelab.core.ground_truth import build_ground_truth
    from tradelab.core.reward import compute_score
    from tradelab.stage1.refine import hindsight_example

    full = config.llm.model_copy(update={"model": "models/base/tiny-advisor"})
    compact = config.llm.model_copy(update={"model": "smollm2-135m-instruct"})
    assert full.active_user_template == full.prompts.user_template
    assert compact.active_user_template == compact.prompts.compact_user_template
    context = next(c for c in random_contexts(50, 9) if c["position"]["side"] == "flat" and len(c["allowed_actions"]) == 3)
    records = []
    for llm in (full, compact):
        record = copy.deepcopy(make_record(3, allowed=list(context["allowed_actions"])))
        record["market_context"] = context
        record["prompt"] = build_messages(context, llm)
        records.append(record)
    a, b = records
    assert a["prompt"] != b["prompt"] and a["prompt"][0] == b["prompt"][0]
    text = b["prompt"][1]["content"]
    for field in ("trend", "rsi", "vol", "vwap", "ret5", "ret30", "position", "buffer", "allowed"):
        assert re.search(rf"\b{field}\b", text), field  # what the teacher, hindsight labels and planted cue use
    digits = [sum(ch.isdigit() for ch in r["prompt"][1]["content"]) for r in records]
    assert digits[1] < digits[0] / 2  # numbers are what a real tokenizer spells digit by digit
    assert build_ground_truth(a) == build_ground_truth(b)
    truth = json.dumps(build_ground_truth(a))
    for answer in ("BUY | 0.8 | up", "SELL | 0.6 | down", "HOLD | 0.5 | wait", "nonsense"):
        assert compute_score("tradelab/NQ", answer, truth) == compute_score("tradelab/NQ", answer, json.dumps(
            build_ground_truth(b)))
    label_a, label_b = hindsight_example(a, 0.05), hindsight_example(b, 0.05)
    assert label_a is not None and label_b is not None
    assert label_a[1:] == label_b[1:] and label_a[0] == a["prompt"] and label_b[0] == b["prompt"]
