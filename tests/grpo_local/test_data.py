"""Dataset integrity (SHA-256 vs dataset_metadata.json), the prompt-length guard, the blocklist and RNG round trips."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import sha256_file
from tradelab.grpo.local.checkpoints import capture_rng, resolve_checkpoint, restore_rng
from tradelab.grpo.local.data import PromptGuard, PromptRow, prepare_rows, verify_dataset
from tradelab.grpo.local.rollout import score_answers
from tradelab.paths import Workspace


def _write_split(path: Path, n_rows: int, content: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"data_source": "tradelab/NQ", "ability": "trading",
             "prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": f"{content} {i}"}],
             "reward_model": {"style": "rule", "ground_truth": json.dumps({"i": i})},
             "extra_info": {"split": "train", "index": i, "experience_id": f"e{i}", "timestamp": "t", "market": "NQ"}}
            for i in range(n_rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    data_dir = Workspace.at(tmp_path).soft_grpo_data_dir("NQ")
    files = {}
    for split in ("train", "val"):
        path = data_dir / f"stage2_{split}.parquet"
        _write_split(path, 3, split)
        files[split] = {"path": str(path), "sha256": sha256_file(path), "rows": 3}
    (data_dir / "dataset_metadata.json").write_text(json.dumps({"files": files}))
    return tmp_path


def test_matching_hashes_pass(dataset_root: Path) -> None:
    check = verify_dataset(dataset_root, "NQ", allow_mismatch=False)
    assert check.mismatches == [] and check.sha256s == check.expected


def test_changed_parquet_is_an_error_unless_allowed(dataset_root: Path) -> None:
    train = Workspace.at(dataset_root).soft_grpo_data_dir("NQ") / "stage2_train.parquet"
    _write_split(train, 4, "edited")
    with pytest.raises(DataError, match="allow_dataset_hash_mismatch"):
        verify_dataset(dataset_root, "NQ", allow_mismatch=False)
    check = verify_dataset(dataset_root, "NQ", allow_mismatch=True)
    assert check.mismatches == ["train"] and check.sha256s["train"] == sha256_file(train)


def test_missing_metadata_says_how_to_export(tmp_path: Path) -> None:
    with pytest.raises(StageNotReady, match="--dataset-only"):
        verify_dataset(tmp_path, "NQ", allow_mismatch=False)


class _CharTokenizer:
    """One id per character; the 'chat template' joins the contents."""

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return "|".join(m["content"] for m in messages) + ">"

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [ord(c) for c in text]}


def test_prompt_guard_truncates_to_the_tail_or_rejects(dataset_root: Path) -> None:
    train = Workspace.at(dataset_root).soft_grpo_data_dir("NQ") / "stage2_train.parquet"
    full = len("sys|train 0>")
    cut = PromptGuard(max_tokens=full - 4, overflow="truncate")
    rows = prepare_rows(train, _CharTokenizer(), cut)
    assert cut.truncated == 3 and rows[0].prompt_ids == [ord(c) for c in "sys|train 0>"][4:]
    assert rows[2].ground_truth == json.dumps({"i": 2}) and rows[2].extra_info["index"] == 2
    reject = PromptGuard(max_tokens=full - 4, overflow="reject")
    with pytest.raises(DataError, match="prompt_overflow"):
        prepare_rows(train, _CharTokenizer(), reject)
    assert reject.rejected == 3


def test_blocked_answers_are_counted_from_the_reward() -> None:
    row = PromptRow([1], "tradelab/NQ", "{}", {})

    def reward(data_source, text, ground_truth, extra_info=None):
        blocked = "spam.example" in text
        return {"score": -1.5 if blocked else (0.7 if "BUY" in text else -0.4), "format": 1.0,
                "blocked": float(blocked)}

    scores = score_answers([row] * 3, ["BUY | 0.9 | visit spam.example", "SELL | 0.5 | x", "BUY | 0.6 | y"], reward)
    assert scores.rewards == [-1.5, -0.4, 0.7]
    assert scores.blocked == 1 and scores.formats == [1.0, 1.0, 1.0]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.save(capture_rng(), tmp_path / "rng.pt")
    states = torch.load(tmp_path / "rng.pt", weights_only=True)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)
    restore_rng(states)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_resume_path_must_hold_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path)
