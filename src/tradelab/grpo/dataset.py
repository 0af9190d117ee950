"""Stage 1 experience buffer -> verl GRPO datasets (``data/soft_grpo/<MKT>/``).

:func:`export_dataset` streams ``stage1_experience.jsonl`` line by line, keeps resolved experiences that pass the
filters in ``config/phase3_soft_grpo.yaml``, splits them (chronological by default: validation is the latest period)
and writes ``stage2_train.parquet``, ``stage2_val.parquet``, ``stage2_samples.jsonl`` and ``dataset_metadata.json``
(with what a constant BUY, SELL or HOLD advisor scores on each split, :mod:`tradelab.grpo.baselines`). The train
file's rows are in time order, or balanced between the sides that won in hindsight for engines that read them in
order (``dataset.train_order``, :mod:`tradelab.grpo.train_order`).
Memory stays bounded at any file size: kept rows are spilled as sorted runs to a temporary folder beside the output
and each part is written in chunks (one row group each), in the same order and with the same rows as one table.
Rows follow ARCHITECTURE.md §7 with an explicit Arrow schema, so every row has the same types and no empty structs.
The prompt is the record's own point-in-time messages; the forward window only ever goes into ``ground_truth``.
Every prompt opens with a system turn (the record's, else the advisor's ``llm.prompts.system``): the engines render
prompts through the model's chat template, and a template such as SmolLM2's inserts a default system turn of its
own ("You are a helpful AI assistant named SmolLM...") in front of a conversation that has none.

The pass over the file is :mod:`tradelab.grpo.export_scan`, the bounded-memory sort and the parquet parts
:mod:`tradelab.grpo.export_spill`, the row format :mod:`tradelab.grpo.rows`; this module runs them and publishes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig, config_hash
from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import atomic_path, sha256_file, writing
from tradelab.grpo.baselines import split_constant_answers
from tradelab.grpo.export_scan import Scan, stream_experience
from tradelab.grpo.export_spill import Spill
from tradelab.grpo.train_order import sides_balanced_order, time_order
from tradelab.manifest import load_manifest, set_stage2
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, origin, utc_now
from tradelab.setaside import covered, load_ledger

log = logging.getLogger(__name__)

TRAIN_FILE = "stage2_train.parquet"
VAL_FILE = "stage2_val.parquet"
SAMPLES_FILE = "stage2_samples.jsonl"
METADATA_FILE = "dataset_metadata.json"
MAX_REPORTED_LINES = 50
SPILL_PREFIX = ".export-"
"""The export's private temporary folder beside its outputs (removed when it ends; swept by the next export)."""


def _split(n: int, settings: Any) -> tuple[Any, Any]:
    """Positions (into the time-ordered kept rows) of train and val: chronological (val = latest) or a seeded
    random split; both keep time order inside each part."""
    import numpy as np

    n_val = 0 if n < 2 else min(n - 1, max(1, round(n * settings.val_fraction)))
    positions = np.arange(n, dtype=np.int64)
    if settings.split == "chronological":
        return positions[: n - n_val], positions[n - n_val:]
    is_val = np.zeros(n, dtype=bool)
    is_val[np.random.default_rng(settings.seed).permutation(n)[:n_val]] = True
    return positions[~is_val], positions[is_val]


def _check_scan(path: Path, scan: Scan, settings: Any, market: str) -> None:
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
            f"  dataset.decisions = {settings.decisions!r}: removed {scan.removed_decisions}\n"
            f"  dataset.min_reward = {settings.min_reward!r}: removed {scan.removed_min_reward}\n"
            f"  dataset.include_failures = {settings.include_failures!r} "
            f"(dataset.min_success_pnl = {settings.min_success_pnl!r}): removed {scan.removed_failures}\n"
            f"Relax dataset.min_reward (or set it to null), set dataset.include_failures: true or "
            f"dataset.decisions: all"
        )


def sweep_temporaries(out_dir: Path) -> list[Path]:
    """Remove what an export killed mid-way left in ``out_dir``: its spill folder and half-written temp files.

    Only called under the market lock, so no other export is writing there. The outputs themselves are never
    half-written (each appears by ``os.replace``).
    """
    removed = []
    patterns = (f"{SPILL_PREFIX}*", ".stage2_*", f".{Path(METADATA_FILE).stem}.*")
    for path in sorted(p for pattern in patterns for p in out_dir.glob(pattern)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("%s: removed %d files an interrupted export left", out_dir, len(removed))
    return removed


def export_dataset(
    root: str | Path, market: str, config: TradelabConfig, *, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export the Stage 2 parquet datasets and record ``stage2.dataset`` in the manifest.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration (``soft_grpo.dataset`` holds the filters, the row cap and the split).
        progress: Called with ``(bytes read, experience file size)`` while the file streams.

    Returns:
        The metadata written to ``dataset_metadata.json`` (counts, filters, files with sha256, source hash, each
        split's constant-answer rewards), plus ``paths`` (train, val, samples, metadata) and ``sha256s`` as recorded
        in ``stage2.dataset``.

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
    keep = settings.max_samples
    out_dir = ws.soft_grpo_data_dir(market)
    skip = covered(load_ledger(source))
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(out_dir)
    paths = {"train": out_dir / TRAIN_FILE, "val": out_dir / VAL_FILE, "samples": out_dir / SAMPLES_FILE}
    # Every file is written in full before any replaces its predecessor (and the manifest entry comes last), so an
    # export that fails (a full disk) or is killed leaves the previous one whole and matching its manifest entry.
    with contextlib.ExitStack() as publish:
        temps = {name: publish.enter_context(atomic_path(path))
                 for name, path in {**paths, "metadata": out_dir / METADATA_FILE}.items()}
        with writing(out_dir):
            spill_dir = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=out_dir))
        try:
            spill = Spill(spill_dir, settings.reasoning_instruction, config.llm.prompts.system)
            scan = stream_experience(source, settings, keep, spill, progress, skip)
            if progress:
                progress(source.stat().st_size, source.stat().st_size)
            _check_scan(source, scan, settings, market)
            if scan.malformed:
                log.warning("%s: %d malformed lines skipped (lines %s; first: %s)", source, len(scan.malformed),
                            ", ".join(str(n) for n, _ in scan.malformed[:20]), scan.malformed[0][1])
            order = spill.order()
            train, val = _split(len(order), settings)
            samples: list[dict[str, Any]] = []
            spill.write_part(temps["train"], order[train], "train", market, samples, settings.samples_rows)
            sides: list[str | None] = []
            constants = {"train": split_constant_answers(temps["train"], sides)}
            if settings.train_order == "sides_balanced":  # rewritten in that order, from the sides just scored
                positions, train_order = sides_balanced_order(sides, settings.seed)
                samples = []
                spill.write_part(temps["train"], order[train][positions], "train", market, samples,
                                 settings.samples_rows)
            else:
                positions, train_order = time_order(len(train))
            spill.write_part(temps["val"], order[val], "val", market, samples, settings.samples_rows)
            constants["val"] = split_constant_answers(temps["val"])
        finally:
            shutil.rmtree(spill_dir, ignore_errors=True)
        with writing(paths["samples"]):
            temps["samples"].write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in samples),
                                        encoding="utf-8")
        metadata = _metadata(source, scan, settings, config, len(order), paths,
                             {"train": len(positions), "val": len(val), "samples": len(samples)},
                             {name: sha256_file(temps[name]) for name in paths})
        metadata["constant_answers"] = {split: answers.record() for split, answers in constants.items()}
        metadata["train_order"] = train_order.record()
        with writing(out_dir / METADATA_FILE):
            temps["metadata"].write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
    entry = _manifest_entry(metadata, out_dir / METADATA_FILE, ws)
    set_stage2(root, market, "dataset", entry)
    return {**metadata, "paths": {k: str(ws.resolve(v)) for k, v in entry["paths"].items()},
            "sha256s": entry["sha256s"]}


def _metadata(
    source: Path, scan: Scan, settings: Any, config: TradelabConfig, kept: int, paths: dict[str, Path],
    rows: dict[str, int], sha256s: dict[str, str],
) -> dict[str, Any]:
    capped = scan.passed_filters - kept
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": utc_now(),
        "profile": config.profile,
        "origin": origin(config_hash(config), settings.seed, profile=config.profile),
        "source": {"path": str(source), "sha256": scan.source_sha256, "lines": scan.lines},
        "counts": {
            "lines": scan.lines, "set_aside": scan.set_aside, "blank": scan.blank, "malformed": len(scan.malformed),
            "without_outcome": scan.without_outcome, "empty_forward": scan.empty_forward,
            "with_outcome": scan.with_outcome,
            "successes": scan.successes, "after_filters": scan.passed_filters, "kept": kept,
            "train": rows["train"], "val": rows["val"], "samples": rows["samples"],
        },
        "malformed_lines": [{"line": n, "error": why} for n, why in scan.malformed[:MAX_REPORTED_LINES]],
        "filters": {
            "decisions": {"value": settings.decisions, "removed": scan.removed_decisions},
            "min_reward": {"value": settings.min_reward, "removed": scan.removed_min_reward},
            "include_failures": {"value": settings.include_failures, "min_success_pnl": settings.min_success_pnl,
                                 "removed": scan.removed_failures},
            "row_cap": {"value": settings.max_samples, "removed": capped},
        },
        "split": {"mode": settings.split, "val_fraction": settings.val_fraction, "seed": settings.seed},
        "files": {name: {"path": str(p), "sha256": sha256s[name], "rows": rows[name]} for name, p in paths.items()},
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
        "profile": metadata["profile"],
        "constant_answers": metadata["constant_answers"],
        "train_order": metadata["train_order"],
    }
