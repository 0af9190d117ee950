"""`stage1` under a light profile with `llm.model: smollm2-135m-instruct`: the real model through the warm start, the hybrid's
batched advice, the experience file and one refinement, as a user runs it (CLI subprocess), on light settings.

The light settings are config values a user could write: an 8-example warm start, one 512-step rollout, one
refinement on the latest 8 records. The converted base comes from the suite's cache (linked into the workspace).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from smollm2_factory import SMOLLM2, link_smollm2

from tradelab.advisor.bases import named_source
from tradelab.fileio import iter_jsonl
from tradelab.paths import Workspace

REPO = Path(__file__).resolve().parents[2]

LIGHT = {"llm.yaml": [("model: default", f"model: {SMOLLM2}"), ("  n_examples: 256", "  n_examples: 8")]}
"""(file, [(shipped text, light text)]) edits of a copy of the shipped config."""
LIGHT_PROFILE = """extends: smoke
stage1:
  refinement:
    every_steps: 512
    min_records: 4
    recent_records: 8
"""
"""The workspace's own profile: the smoke profile with one refinement on the latest 8 records."""


def _light_config(root: Path) -> None:
    folder = root / "config"
    shutil.copytree(REPO / "config", folder)
    for name, edits in LIGHT.items():
        text = (folder / name).read_text(encoding="utf-8")
        for old, new in edits:
            assert old in text, (name, old)
            text = text.replace(old, new, 1)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "profiles" / "light.yaml").write_text(LIGHT_PROFILE, encoding="utf-8")


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900)


@pytest.mark.slow
def test_stage1_on_smollm2_under_a_light_profile(tmp_path: Path, smollm2_dir: Path) -> None:
    root = tmp_path / "ws"
    link_smollm2(root, smollm2_dir)
    _light_config(root)
    assert _cli(root, "data", "generate", "--market", "NQ", "--days", "12").returncode == 0
    done = _cli(root, "stage1", "--market", "NQ", "--profile", "light", "--timesteps", "512")
    assert done.returncode == 0, done.stderr[-2000:]
    ws = Workspace.at(root)
    manifest = json.loads(ws.manifest_path("NQ").read_text())
    stage1 = manifest["stage1"]
    assert stage1["status"] == "completed" and stage1["profile"] == "light"
    base = stage1["base_model"]
    assert base["name"] == SMOLLM2 and base["sha256"] == named_source(SMOLLM2).record_sha256
    assert base["smoke_test_model"] is False and base["local_path"] == f"models/base/{SMOLLM2}"
    llm = stage1["llm_stats"]
    assert llm["queries"] > 0 and llm["parse_rate"] is not None and llm["advisor"]["prefix_cache_shared_tokens"] > 0
    records = [line.record for line in iter_jsonl(ws.experience_path("NQ")) if line.record is not None]
    assert records, "no experience recorded"
    user = records[0]["prompt"][1]["content"]
    assert " ret5 " in user and " close " not in user  # the compact template, rendered for a real tokenizer
    warm = json.loads((ws.market_model_dir("NQ") / "stage1_warm_lora" / "tradelab_adapter.json").read_text())
    assert warm["base_model"]["sha256"] == base["sha256"] and warm["training"]["answer_end_token"] == "<|im_end|>"
    refined = json.loads((ws.stage1_lora_dir("NQ") / "tradelab_adapter.json").read_text())
    assert refined["init_adapter"] is not None and refined["training"]["examples"] > 0
    status = _cli(root, "status", "--market", "NQ", "--json")
    assert status.returncode == 0 and SMOLLM2 in status.stdout and base["sha256"] in status.stdout
