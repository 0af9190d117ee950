"""Stage 1 experience buffer -> verl GRPO datasets (``data/soft_grpo/<MKT>/``).

:func:`export_dataset` streams ``stage1_experience.jsonl`` line by line, keeps resolved experiences that pass the
filters in ``config/phase3_soft_grpo.yaml``, splits them (chronological by default: validation is the latest period)
and writes ``stage2_train.parquet``, ``stage2_val.parquet``, ``stage2_samples.jsonl`` and ``dataset_metadata.json``.
Rows follow ARCHITECTURE.md §7 with an explicit Arrow schema, so every row has the same types and no empty structs.
The prompt is the record's own point-in-time messages; the forward window only ever goes into ``ground_truth``.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig, config_hash
from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from tradelab.grpo.record_check import check_record
from tradelab.manifest import load_manifest, set_stage2
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, origin, utc_now

log = logging.getLogger(__name__)

TRAIN_FILE = "stage2_train.parquet"
VAL_FILE = "stage2_val.parquet"
SAMPLES_FILE = "stage2_samples.jsonl"
METADATA_FILE = "dataset_metadata.json"
ABILITY = "trading"
MAX_REPORTED_LINES = 50
PROGRESS_EVERY_LINES = 1000
"""How often the export reports progress while streaming the experience file."""


def row_schema() -> Any:
    """The Arrow schema of a Stage 2 row (ARCHITECTURE.md §7)."""
    import pyarrow as pa

    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("split", pa.string()), ("index", pa.int64()), ("experience_id", pa.string()),
            ("timestamp", pa.string()), ("market", pa.string()),
        ])),
    ])


@dataclass
class _Candidate:
    """A kept experience, reduced to what a row needs (so memory does not hold whole records)."""

    sort_key: tuple[float, str]
    experience_id: str
    timestamp: str
    prompt: list[dict[str, str]]
    ground_truth: str


_NO_FORWARD = _Candidate((0.0, ""), "", "", [], "")
"""Marker for a resolved experience whose forward window is empty."""


@dataclass
class _Scan:
    """Counters gathered while streaming the experience file."""

    lines: int = 0
    blank: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    without_outcome: int = 0
    empty_forward: int = 0
    with_outcome: int = 0
    removed_min_reward: int = 0
    removed_failures: int = 0
    successes: int = 0
    passed_filters: int = 0
    source_sha256: str = ""


def _prompt(record: dict[str, Any]) -> list[dict[str, str]]:
    messages = record.get("prompt")
    if not isinstance(messages, list) or not messages:
        raise ValueError("prompt must be a non-empty list of messages")
    kept = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user"):
            raise ValueError(f"prompt[{i}] must be a system or user message")
        if not isinstance(message.get("content"), str) or not message["content"]:
            raise ValueError(f"prompt[{i}].content must be a non-empty string")
        kept.append({"role": message["role"], "content": message["content"]})
    if kept[-1]["role"] != "user":
        raise ValueError("the last prompt message must be the user's")
    return kept


def _sort_key(record: dict[str, Any]) -> tuple[float, str]:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        raise ValueError("timestamp must be an ISO-8601 string")
    moment = datetime.fromisoformat(stamp)
    seconds = moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=None).timestamp()
    return seconds, str(record.get("id", ""))


def _candidate(record: Any, blocklist: Sequence[str] = ()) -> _Candidate | None:
    """A candidate row from a parsed line; None when the experience has no outcome yet, :data:`_NO_FORWARD` when
    its forward window is empty (a decision at the very end of the data cannot be scored).

    Raises:
        ValueError: The record is malformed (the message says which field).
    """
    check_record(record)
    if not record["id"]:
        raise ValueError("id must be a non-empty string")
    if record.get("outcome") is None:
        return None
    if not isinstance(record["outcome"], dict):
        raise ValueError("outcome must be an object or null")
    if isinstance(record.get("forward"), dict) and record["forward"].get("open") == []:
        return _NO_FORWARD
    return _Candidate(_sort_key(record), record["id"], record["timestamp"], _prompt(record),
                      dumps(build_ground_truth(record, blocklist=blocklist)))


def _passes(record: dict[str, Any], scan: _Scan, settings: Any) -> bool:
    """Apply min_reward and include_failures/min_success_pnl, counting what each removes."""
    outcome = record["outcome"]
    reward = outcome.get("reward")
    if settings.min_reward is not None and (not isinstance(reward, (int, float)) or reward < settings.min_reward):
        scan.removed_min_reward += 1
        return False
    pnl = outcome.get("pnl")
    success = isinstance(pnl, (int, float)) and math.isfinite(pnl) and pnl >= settings.min_success_pnl
    scan.successes += int(success)
    if not success and not settings.include_failures:
        scan.removed_failures += 1
        return False
    return True


def _stream(
    path: Path, settings: Any, keep: int | None, progress: Callable[[int, int], None] | None = None
) -> tuple[_Scan, list[_Candidate]]:
    """Read the JSONL once: count, validate, filter; keep the latest ``keep`` candidates (all when None).

    ``progress`` gets ``(bytes read, file size)`` every :data:`PROGRESS_EVERY_LINES` lines and at the end.
    """
    scan = _Scan()
    digest = hashlib.sha256()
    heap: list[tuple[tuple[float, str], int, _Candidate]] = []
    total_bytes = path.stat().st_size
    done_bytes = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            digest.update(raw)
            done_bytes += len(raw)
            if progress and number % PROGRESS_EVERY_LINES == 0:
                progress(done_bytes, total_bytes)
            scan.lines = number
            if not raw.strip():
                scan.blank += 1
                continue
            try:
                record = json.loads(raw)
                candidate = _candidate(record, settings.blocklist)
            except (ValueError, TypeError, KeyError) as exc:
                scan.malformed.append((number, str(exc)[:200]))
                continue
            if candidate is None:
                scan.without_outcome += 1
                continue
            if candidate is _NO_FORWARD:
                scan.empty_forward += 1
                continue
            scan.with_outcome += 1
            if not _passes(record, scan, settings):
                continue
            scan.passed_filters += 1
            item = (candidate.sort_key, number, candidate)
            if keep is None or len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    scan.source_sha256 = digest.hexdigest()
    return scan, [c for _, _, c in sorted(heap, key=lambda t: t[:2])]


def _split(rows: list[_Candidate], settings: Any) -> tuple[list[_Candidate], list[_Candidate]]:
    """Chronological (val = latest) or seeded random split; both keep time order inside each part."""
    n = len(rows)
    n_val = 0 if n < 2 else min(n - 1, max(1, round(n * settings.val_fraction)))
    if settings.split == "chronological":
        return rows[: n - n_val], rows[n - n_val:]
    import numpy as np

    val_idx = set(np.random.default_rng(settings.seed).permutation(n)[:n_val].tolist())
    return [r for i, r in enumerate(rows) if i not in val_idx], [r for i, r in enumerate(rows) if i in val_idx]


def with_reasoning(prompt: list[dict[str, str]], instruction: str | None) -> list[dict[str, str]]:
    """``prompt`` with ``instruction`` appended to its system message (one is added when there is none).

    The soft-thinking fork keeps a rollout in soft mode until ``</think>``; asking for a short reasoning block
    before the answer line makes only that block soft and the answer line discrete. The instruction is fixed text,
    so the prompt stays point-in-time.
    """
    if not instruction:
        return prompt
    if prompt[0]["role"] == "system":
        return [{"role": "system", "content": f"{prompt[0]['content'].rstrip()} {instruction}"}, *prompt[1:]]
    return [{"role": "system", "content": instruction}, *prompt]


def _rows(part: list[_Candidate], split: str, market: str, instruction: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "data_source": f"tradelab/{market}",
            "prompt": with_reasoning(c.prompt, instruction),
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": c.ground_truth},
            "extra_info": {"split": split, "index": i, "experience_id": c.experience_id,
                           "timestamp": c.timestamp, "market": market},
        }
        for i, c in enumerate(part)
    ]


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=row_schema())
    sink = io.BytesIO()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue())


def _check_scan(path: Path, scan: _Scan, settings: Any, market: str) -> None:
    """The guardrails: all lines bad, no resolved experience, or filters that remove everything."""
    content_lines = scan.lines - scan.blank
    if content_lines and len(scan.malformed) == content_lines:
        shown = "; ".join(f"line {n}: {why}" for n, why in scan.malformed[:5])
        raise DataError(f"{path}: all {content_lines} lines are malformed ({shown}); re-run Stage 1 to rewrite it")
    if scan.with_outcome == 0:
        raise StageNotReady(
            f"{path}: no experience has an outcome ({scan.without_outcome} unresolved, {scan.empty_forward} with "
            f"an empty forward window, {content_lines} lines), so there is nothing to build a GRPO dataset from. "
            f"Run Stage 1 longer (`python main.py stage1 --market {market}` with more --timesteps) so trades "
            f"resolve, and check that "
            f"Stage 1 attaches outcomes to its experience records"
        )
    if scan.passed_filters == 0:
        raise DataError(
            f"{path}: the dataset filters in config/phase3_soft_grpo.yaml removed all {scan.with_outcome} "
            f"experiences with an outcome:\n"
            f"  dataset.min_reward = {settings.min_reward!r}: removed {scan.removed_min_reward}\n"
            f"  dataset.include_failures = {settings.include_failures!r} "
            f"(dataset.min_success_pnl = {settings.min_success_pnl!r}): removed {scan.removed_failures}\n"
            f"Relax dataset.min_reward (or set it to null) or set dataset.include_failures: true"
        )


def export_dataset(
    root: str | Path, market: str, config: TradelabConfig, *, test_mode: bool,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export the Stage 2 parquet datasets and record ``stage2.dataset`` in the manifest.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration (``soft_grpo.dataset`` holds the filters and split).
        test_mode: Cap the export at ``dataset.test_max_rows`` (the latest rows).
        progress: Called with ``(bytes read, experience file size)`` while the file streams.

    Returns:
        The metadata written to ``dataset_metadata.json`` (counts, filters, files with sha256, source hash), plus
        ``paths`` (train, val, samples, metadata) and ``sha256s`` as recorded in ``stage2.dataset``.

    Raises:
        StageNotReady: The experience file is missing or no experience has an outcome.
        DataError: Every line is malformed, or the filters remove every experience.
    """
    ws = Workspace.at(root)
    load_manifest(root, market)  # a damaged or newer manifest fails here, before any file is written
    settings = config.soft_grpo.dataset
    source = ws.experience_path(market)
    if not source.is_file():
        raise StageNotReady(
            f"{source}: experience file not found; run `python main.py stage1 --market {market}` first "
            f"(Stage 1 writes it)"
        )
    caps = [c for c in (settings.max_samples, settings.test_max_rows if test_mode else None) if c is not None]
    keep = min(caps) if caps else None
    scan, kept = _stream(source, settings, keep, progress)
    if progress:
        progress(source.stat().st_size, source.stat().st_size)
    _check_scan(source, scan, settings, market)
    if scan.malformed:
        log.warning("%s: %d malformed lines skipped (lines %s; first: %s)", source, len(scan.malformed),
                    ", ".join(str(n) for n, _ in scan.malformed[:20]), scan.malformed[0][1])
    train, val = _split(kept, settings)
    out_dir = ws.soft_grpo_data_dir(market)
    instruction = settings.reasoning_instruction
    train_rows, val_rows = _rows(train, "train", market, instruction), _rows(val, "val", market, instruction)
    paths = {"train": out_dir / TRAIN_FILE, "val": out_dir / VAL_FILE, "samples": out_dir / SAMPLES_FILE}
    _write_parquet(paths["train"], train_rows)
    _write_parquet(paths["val"], val_rows)
    samples = (train_rows + val_rows)[: settings.samples_rows]
    atomic_write_text(paths["samples"], "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in samples))
    metadata = _metadata(source, scan, settings, config, test_mode, keep, len(kept), paths,
                         {"train": len(train_rows), "val": len(val_rows), "samples": len(samples)})
    atomic_write_json(out_dir / METADATA_FILE, metadata)
    entry = _manifest_entry(metadata, out_dir / METADATA_FILE, ws)
    set_stage2(root, market, "dataset", entry)
    return {**metadata, "paths": {k: str(ws.resolve(v)) for k, v in entry["paths"].items()},
            "sha256s": entry["sha256s"]}


def _metadata(
    source: Path, scan: _Scan, settings: Any, config: TradelabConfig, test_mode: bool, keep: int | None,
    kept: int, paths: dict[str, Path], rows: dict[str, int],
) -> dict[str, Any]:
    capped = scan.passed_filters - kept
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": utc_now(),
        "test_mode": test_mode,
        "origin": origin(config_hash(config), settings.seed),
        "source": {"path": str(source), "sha256": scan.source_sha256, "lines": scan.lines},
        "counts": {
            "lines": scan.lines, "blank": scan.blank, "malformed": len(scan.malformed),
            "without_outcome": scan.without_outcome, "empty_forward": scan.empty_forward,
            "with_outcome": scan.with_outcome,
            "successes": scan.successes, "after_filters": scan.passed_filters, "kept": kept,
            "train": rows["train"], "val": rows["val"], "samples": rows["samples"],
        },
        "malformed_lines": [{"line": n, "error": why} for n, why in scan.malformed[:MAX_REPORTED_LINES]],
        "filters": {
            "min_reward": {"value": settings.min_reward, "removed": scan.removed_min_reward},
            "include_failures": {"value": settings.include_failures, "min_success_pnl": settings.min_success_pnl,
                                 "removed": scan.removed_failures},
            "row_cap": {"value": keep, "max_samples": settings.max_samples,
                        "test_max_rows": settings.test_max_rows if test_mode else None, "removed": capped},
        },
        "split": {"mode": settings.split, "val_fraction": settings.val_fraction, "seed": settings.seed},
        "files": {name: {"path": str(p), "sha256": sha256_file(p), "rows": rows[name]} for name, p in paths.items()},
    }


def _manifest_entry(metadata: dict[str, Any], metadata_path: Path, ws: Workspace) -> dict[str, Any]:
    files = metadata["files"]
    paths = {**{k: v["path"] for k, v in files.items()}, "metadata": str(metadata_path)}
    return {
        "counts": metadata["counts"],
        "paths": {k: ws.record(v) for k, v in paths.items()},  # relative to the root: the workspace can move
        "sha256s": {k: v["sha256"] for k, v in files.items()},
        "source": metadata["source"],
        "filters": metadata["filters"],
        "generated_at": metadata["generated_at"],
        "test_mode": metadata["test_mode"],
    }
