"""Stage 2 parquet rows for the local engine: integrity check, chat templating, prompt-length guard.

The parquet files and ``dataset_metadata.json`` are written by :func:`tradelab.grpo.dataset.export_dataset`; the
metadata lists each file's SHA-256 under ``files.<split>.sha256``. A file whose hash differs is an error unless the
caller allows the mismatch (then it is logged and reported).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import sha256_file
from tradelab.paths import Workspace

log = logging.getLogger(__name__)

SPLIT_FILES: dict[str, str] = {"train": "stage2_train.parquet", "val": "stage2_val.parquet"}
METADATA_FILE = "dataset_metadata.json"


@dataclass(frozen=True)
class PromptRow:
    """One Stage 2 row, ready for rollouts.

    Attributes:
        prompt_ids: Chat-templated prompt tokens (after the length guard).
        data_source: ``tradelab/<MKT>``, passed to the reward.
        ground_truth: The JSON ground-truth string, passed to the reward.
        extra_info: The row's ``extra_info`` dict.
    """

    prompt_ids: list[int]
    data_source: str
    ground_truth: str
    extra_info: dict[str, Any]


@dataclass
class DatasetCheck:
    """Integrity of the Stage 2 files.

    Attributes:
        paths: Split -> parquet path.
        sha256s: Split -> actual SHA-256.
        expected: Split -> SHA-256 recorded in the metadata.
        mismatches: Splits whose hash differs from the metadata.
    """

    paths: dict[str, str]
    sha256s: dict[str, str]
    expected: dict[str, str]
    mismatches: list[str] = field(default_factory=list)


def verify_dataset(root: str | Path, market: str, *, allow_mismatch: bool) -> DatasetCheck:
    """Hash the train/val parquet files and compare them with ``dataset_metadata.json``.

    Raises:
        StageNotReady: A parquet file or the metadata is missing.
        DataError: The metadata is unreadable, or a hash differs and ``allow_mismatch`` is false.
    """
    data_dir = Workspace.at(root).soft_grpo_data_dir(market)
    meta_path = data_dir / METADATA_FILE
    hint = f"run `python main.py stage2 --market {market} --dataset-only` to export it"
    if not meta_path.is_file():
        raise StageNotReady(f"{meta_path}: dataset metadata not found; {hint}")
    try:
        files = json.loads(meta_path.read_text(encoding="utf-8"))["files"]
        expected = {split: str(files[split]["sha256"]) for split in SPLIT_FILES}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: cannot read files.<train|val>.sha256 ({exc!r}); {hint} again") from None
    check = DatasetCheck(paths={}, sha256s={}, expected=expected)
    for split, name in SPLIT_FILES.items():
        path = data_dir / name
        if not path.is_file():
            raise StageNotReady(f"{path}: Stage 2 {split} split not found; {hint}")
        check.paths[split] = str(path)
        check.sha256s[split] = sha256_file(path)
        if check.sha256s[split] != expected[split]:
            check.mismatches.append(split)
    if check.mismatches and not allow_mismatch:
        split = check.mismatches[0]
        raise DataError(
            f"{check.paths[split]}: SHA-256 {check.sha256s[split][:16]}... differs from files.{split}.sha256 "
            f"{expected[split][:16]}... in {meta_path}; the file changed after export. Re-export it ({hint}) or set "
            f"grpo_local.guards.allow_dataset_hash_mismatch: true to train on it anyway"
        )
    for split in check.mismatches:
        log.warning("%s: SHA-256 differs from %s (allowed by config)", check.paths[split], meta_path)
    return check


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read a Stage 2 parquet file into plain row dicts (ARCHITECTURE.md §7)."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read the parquet file ({exc}); re-export the Stage 2 dataset") from None
    for i, row in enumerate(rows):
        missing = [k for k in ("data_source", "prompt", "reward_model", "extra_info") if not row.get(k)]
        if missing:
            raise DataError(f"{path}: row {i} lacks {missing}; re-export the Stage 2 dataset")
    return rows


@dataclass
class PromptGuard:
    """The prompt-length guard.

    Attributes:
        max_tokens: Longest prompt accepted.
        overflow: ``truncate`` (keep the last ``max_tokens`` tokens) or ``reject`` (drop the row).
        truncated: Rows cut so far.
        rejected: Rows dropped so far.
    """

    max_tokens: int
    overflow: str
    truncated: int = 0
    rejected: int = 0

    def apply(self, ids: list[int]) -> list[int] | None:
        """The guarded ids, or None when the row is rejected."""
        if len(ids) <= self.max_tokens:
            return ids
        if self.overflow == "truncate":
            self.truncated += 1
            return ids[-self.max_tokens:]
        self.rejected += 1
        return None


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Chat-template the messages with the generation prompt appended and tokenise them."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prepare_rows(path: str | Path, tokenizer: Any, guard: PromptGuard, limit: int | None = None) -> list[PromptRow]:
    """Rows of one split, tokenised and guarded, in file order.

    Args:
        path: The parquet file.
        tokenizer: The advisor's tokenizer (with a chat template).
        guard: Prompt-length guard; its counters are updated.
        limit: Keep at most this many rows (after the guard).

    Raises:
        DataError: The file is unreadable or every row was rejected by the guard.
    """
    rows: list[PromptRow] = []
    raw_rows = read_rows(path)
    for row in raw_rows:
        ids = guard.apply(encode_prompt(tokenizer, list(row["prompt"])))
        if ids is None:
            continue
        rows.append(PromptRow(ids, str(row["data_source"]), str(row["reward_model"]["ground_truth"]),
                              dict(row["extra_info"])))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(
            f"{path}: all {len(raw_rows)} rows are longer than grpo_local.rollout.max_prompt_tokens = "
            f"{guard.max_tokens} and prompt_overflow is 'reject'; raise the limit or set prompt_overflow: truncate"
        )
    return rows
