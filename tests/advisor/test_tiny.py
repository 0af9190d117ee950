"""The embedded tiny advisor: built once, idempotent, deterministic, marked as a smoke-test model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradelab.advisor.tiny import (
    SMOKE_MARKER,
    THINK_TOKENS,
    ensure_tiny_advisor,
    is_smoke_test_model,
)
from tradelab.advisor.bases import model_info
from tradelab.config import TradelabConfig
from tradelab.errors import TradelabError
from tradelab.fileio import sha256_dir, sha256_file
from tradelab.paths import Workspace


def test_layout_and_marker(tiny_advisor_dir: Path, config: TradelabConfig) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", SMOKE_MARKER):
        assert (tiny_advisor_dir / name).is_file(), name
    marker = json.loads((tiny_advisor_dir / SMOKE_MARKER).read_text())
    assert marker["smoke_test_model"] is True
    assert marker["tiny_config"] == config.llm.tiny.model_dump()
    assert is_smoke_test_model(tiny_advisor_dir)
    assert model_info(tiny_advisor_dir) == {"name": marker["name"], "local_path": str(tiny_advisor_dir),
                                            "smoke_test_model": True, "sha256": sha256_dir(tiny_advisor_dir),
                                            "source": "folder"}
    model_config = json.loads((tiny_advisor_dir / "config.json").read_text())
    assert model_config["model_type"] == "llama"
    assert model_config["hidden_size"] == config.llm.tiny.hidden_size


def test_about_a_million_parameters(tiny_advisor_dir: Path) -> None:
    params = json.loads((tiny_advisor_dir / SMOKE_MARKER).read_text())["parameters"]
    assert 300_000 <= params <= 3_000_000


def test_idempotent(advisor_root: Path, tiny_advisor_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_advisor_dir.iterdir()}
    assert ensure_tiny_advisor(advisor_root) == tiny_advisor_dir
    assert {p.name: p.stat().st_mtime_ns for p in tiny_advisor_dir.iterdir()} == before
    assert not [p for p in tiny_advisor_dir.parent.iterdir() if p.name.startswith(".tiny-advisor")]


def test_incomplete_directory_is_an_error(tmp_path: Path, config: TradelabConfig) -> None:
    target = Workspace.at(tmp_path).tiny_advisor_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    with pytest.raises(TradelabError, match="delete the folder"):
        ensure_tiny_advisor(tmp_path, config)


@pytest.mark.slow
def test_same_seed_same_files(tmp_path: Path, tiny_advisor_dir: Path, config: TradelabConfig) -> None:
    again = ensure_tiny_advisor(tmp_path, config)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha256_file(again / name) == sha256_file(tiny_advisor_dir / name), name


def test_tokenizer_chat_template_and_special_tokens(tiny_advisor_dir: Path) -> None:
    from tradelab.advisor.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_advisor_dir)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id != tokenizer.eos_token_id
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "close 18000.25\nallowed HOLD"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|bos|><|system|>sys<|end|><|user|>close 18000.25\nallowed HOLD<|end|><|assistant|>"
    for tag in THINK_TOKENS:
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1
    answer = "<think>up</think>BUY | 0.72 | uptrend above vwap, rsi 61 ✓"
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == answer  # byte-level: nothing is unknown


def test_prompts_are_short(tiny_advisor_dir: Path, config: TradelabConfig) -> None:
    from tradelab.advisor.load import load_tokenizer
    from tradelab.advisor.prompts import build_messages, render_chat
    from tradelab.advisor.synth import random_contexts

    tokenizer = load_tokenizer(tiny_advisor_dir)
    lengths = [len(tokenizer(render_chat(tokenizer, build_messages(c, config)), add_special_tokens=False)["input_ids"])
               for c in random_contexts(50, 21)]
    assert max(lengths) <= 200
