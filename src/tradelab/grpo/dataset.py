"""Stage 1 experience buffer -> verl GRPO datasets (``data/soft_grpo/<MKT>/``).

:func:`export_dataset` streams ``stage1_experience.jsonl`` line by line, keeps resolved experiences that pass the
filters in ``config/phase3_soft_grpo.yaml``, splits them (chronological by default: validation is the latest period)
and writes ``stage2_train.parquet``, ``stage2_val.parquet``, ``stage2_samples.jsonl`` and ``dataset_metadata.json``.
Memory stays bounded at any file size: kept rows are spilled as sorted runs to a temporary folder beside the output
and each part is written in chunks (one row group each), in the same order and with the same rows as one table.
Rows follow ARCHITECTURE.md §7 with an explicit Arrow schema, so every row has the same types and no empty structs.
The prompt is the record's own point-in-time messages; the forward window only ever goes into ``ground_truth``.
Every prompt opens with a system turn (the record's, else the advisor's ``llm.prompts.system``): the engines render
prompts through the model's chat template, and a template such as SmolLM2's inserts a default system turn of its
own ("You are a helpful AI assistant named SmolLM...") in front of a conversation that has none.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig, config_hash
from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.records import check_record
from tradelab.core.tradesim import is_entry_decision
from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import atomic_path, sha256_file, writing
from tradelab.manifest import load_manifest, set_stage2
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, origin, utc_now
from tradelab.setaside import covered, load_ledger

log = logging.getLogger(__name__)

TRAIN_FILE = "stage2_train.parquet"
VAL_FILE = "stage2_val.parquet"
SAMPLES_FILE = "stage2_samples.jsonl"
METADATA_FILE = "dataset_metadata.json"
ABILITY = "trading"
MAX_REPORTED_LINES = 50
SPILL_PREFIX = ".export-"
"""The export's private temporary folder beside its outputs (removed when it ends; swept by the next export)."""
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
_REPARSE = _Candidate((0.0, ""), "", "", [], "")
"""Marker for a record read by orjson whose output needs the standard parser and writer (see :func:`_loads`)."""


@dataclass
class _Scan:
    """Counters gathered while streaming the experience file."""

    lines: int = 0
    blank: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    without_outcome: int = 0
    empty_forward: int = 0
    with_outcome: int = 0
    removed_decisions: int = 0
    removed_min_reward: int = 0
    removed_failures: int = 0
    successes: int = 0
    passed_filters: int = 0
    set_aside: int = 0
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
    """``(seconds, id)`` of a record :func:`tradelab.core.records.check_record` passed (a string timestamp)."""
    moment = datetime.fromisoformat(record["timestamp"])
    seconds = moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=None).timestamp()
    return seconds, record["id"]


def _candidate(record: Any, blocklist: Sequence[str] = (), fast: bool = False,
               weights: Mapping[str, float] | None = None) -> _Candidate | None:
    """A candidate row from a parsed line; None when the experience has no outcome yet, :data:`_NO_FORWARD` when
    its forward window is empty (a decision at the very end of the data cannot be scored). ``fast``: the record
    came through orjson; :data:`_REPARSE` when its ground truth must be written by the standard path instead
    (see :func:`_ground_truth_text`).

    Raises:
        ValueError: The record is malformed (the message says which field).
    """
    check_record(record)
    if not record["id"]:
        raise ValueError("id must be a non-empty string")
    if record.get("outcome") is None:
        return None
    if isinstance(record.get("forward"), dict) and record["forward"].get("open") == []:
        return _NO_FORWARD
    text = _ground_truth_text(build_ground_truth(record, blocklist=blocklist, weights=weights, checked=True), fast)
    if text is None:
        return _REPARSE
    return _Candidate(_sort_key(record), record["id"], record["timestamp"], _prompt(record), text)


def _passes(record: dict[str, Any], scan: _Scan, settings: Any) -> bool:
    """Apply decisions, min_reward and include_failures/min_success_pnl, counting what each removes."""
    if settings.decisions == "entries" and not is_entry_decision(record):
        scan.removed_decisions += 1
        return False
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


READ_BYTES = 1 << 23
"""The experience file is read and hashed in blocks of this many bytes, then split into lines."""
RUN_ROWS = 32768
"""Kept candidates held in memory before they are sorted and spilled to a temporary Arrow file; with
:data:`BATCH_ROWS` and :data:`CHUNK_ROWS` this bounds the export's memory whatever the file's size."""
BATCH_ROWS = 256
"""Rows per record batch of a spilled run: what each run holds in memory while the parts are written (all runs
are read side by side, so this times the number of runs is the gather's memory)."""
CHUNK_ROWS = 4096
"""Rows per parquet write (one row group each): a part is written chunk by chunk, never held whole."""


_DIFFERS_FROM_JSON_DUMPS: tuple[bytes, ...] = (b"e+", b"e-", b"0.0000", b"\x7f")
"""Where orjson's text can differ from :func:`json.dumps`' for the same objects: a float with an exponent, one in
[1e-5, 1e-4) (orjson writes ``0.0000x``, Python an exponent) and DEL (Python escapes it); non-ASCII is checked
apart. A string that merely contains one of these only costs the slower path."""


def _loads(raw: bytes) -> tuple[Any, bool]:
    """One JSONL line parsed, and whether orjson parsed it (several times faster than :func:`json.loads`).

    A line orjson rejects (``NaN``, ``Infinity``, a lone surrogate) goes to :func:`json.loads`, so it reads as
    before. orjson reads an integer past 64 bits as a float; :func:`_ground_truth_text` sends such a record back
    to the standard parser (its float has an exponent), and so does a record that fails validation.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(raw), True
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            pass
    return json.loads(raw), False


def _ground_truth_text(ground_truth: dict[str, Any], fast: bool) -> str | None:
    """:func:`tradelab.core.ground_truth.dumps` of ``ground_truth``, byte for byte; None when ``fast`` and orjson's
    text may differ (then the record is parsed again by the standard parser and rebuilt).

    With ``fast`` (its record came through orjson, so it holds no NaN or infinity, which orjson would write as
    null) orjson writes it, and its text is kept when it is ASCII and holds none of
    :data:`_DIFFERS_FROM_JSON_DUMPS`, the only places where the two writers differ.
    """
    if not fast:
        return dumps(ground_truth)
    try:
        text = _orjson.dumps(ground_truth, option=_orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a non-str key, an integer past 64 bits
        return None
    if not text.isascii() or any(marker in text for marker in _DIFFERS_FROM_JSON_DUMPS):
        return None
    return text.decode("ascii")


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt; without it every line takes the json path
    _orjson = None


def _lines(fh: Any, digest: Any) -> Iterator[bytes]:
    """Every line of ``fh`` as ``for line in fh`` yields it (split at ``\\n``, a last line without one included),
    read in :data:`READ_BYTES` blocks that also feed ``digest``."""
    carry = b""
    while block := fh.read(READ_BYTES):
        digest.update(block)
        parts = (carry + block).split(b"\n")
        carry = parts.pop()
        for part in parts:
            yield part + b"\n"
    if carry:
        yield carry


def _stream(
    path: Path, settings: Any, keep: int | None, spill: _Spill, progress: Callable[[int, int], None] | None = None,
    skip: Callable[[int], bool] | None = None,
) -> _Scan:
    """Read the JSONL once: count, validate, filter; hand the kept candidates to ``spill`` (the latest ``keep`` of
    them, all when None).

    ``progress`` gets ``(bytes read, file size)`` every :data:`PROGRESS_EVERY_LINES` lines and at the end. Lines
    whose starting byte ``skip`` returns True for are set aside (:mod:`tradelab.setaside`): counted, nothing more.
    """
    scan = _Scan()
    weights = settings.reward_weights.model_dump()
    digest = hashlib.sha256()
    heap: list[tuple[tuple[float, str], int, _Candidate]] = []
    run: list[tuple[tuple[float, str], int, _Candidate]] = []
    total_bytes = path.stat().st_size
    done_bytes = 0
    number = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(_lines(fh, digest), start=1):
            offset = done_bytes
            done_bytes += len(raw)
            if progress and number % PROGRESS_EVERY_LINES == 0:
                progress(done_bytes, total_bytes)
            if skip is not None and skip(offset):
                scan.set_aside += 1
                continue
            if not raw.strip():
                scan.blank += 1
                continue
            try:
                record, fast = _loads(raw)
                try:
                    candidate = _candidate(record, settings.blocklist, fast, weights)
                except (ValueError, TypeError, KeyError):
                    if not fast:
                        raise
                    candidate = _REPARSE
                if candidate is _REPARSE:
                    record = json.loads(raw)
                    candidate = _candidate(record, settings.blocklist, weights=weights)
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
            if keep is None:
                run.append(item)
                if len(run) >= RUN_ROWS:
                    spill.add_run(run)
                    run = []
            elif len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    scan.lines = number
    scan.source_sha256 = digest.hexdigest()
    spill.add_run(run if keep is None else heap)
    return scan


def _spill_schema() -> Any:
    """Columns of a spilled run: what a row needs beyond the constants."""
    import pyarrow as pa

    return pa.schema([("prompt", row_schema().field("prompt").type), ("ground_truth", pa.string()),
                      ("experience_id", pa.string()), ("timestamp", pa.string())])


class _Spill:
    """Kept candidates as sorted runs in temporary Arrow IPC files, their sort keys in memory.

    Each run is sorted by (timestamp, id, line) before it is written, so the parts read every run front to back one
    :data:`BATCH_ROWS` batch at a time; the global order is one numpy sort over the keys. The rows are those the
    in-memory export wrote (same prompts, ground truths, order), only never all in memory at once.

    Args:
        folder: A private temporary folder for the run files.
        instruction: ``dataset.reasoning_instruction``, applied to each prompt as it is spilled.
        system: The advisor's system message, for a prompt that has none (:func:`with_reasoning`).
    """

    def __init__(self, folder: Path, instruction: str | None, system: str) -> None:
        self.folder = folder
        self.instruction = instruction
        self.system = system
        self.files: list[Path] = []
        self.sizes: list[int] = []
        self._seconds: list[Any] = []
        self._ids: list[str] = []
        self._lines: list[Any] = []

    def add_run(self, items: list[tuple[tuple[float, str], int, _Candidate]]) -> None:
        """Sort ``items`` (``(sort_key, line, candidate)``) and write them as one run (nothing when empty)."""
        import numpy as np
        import pyarrow as pa

        if not items:
            return
        items.sort(key=lambda t: t[:2])
        schema = _spill_schema()
        path = self.folder / f"run{len(self.files):05d}.arrow"
        # Converted BATCH_ROWS at a time: converting a whole run at once would cost several times its size.
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(items), BATCH_ROWS):
                part = [c for _, _, c in items[start:start + BATCH_ROWS]]
                writer.write_batch(pa.record_batch([
                    pa.array([with_reasoning(c.prompt, self.instruction, self.system) for c in part],
                             schema.field("prompt").type),
                    pa.array([c.ground_truth for c in part], pa.string()),
                    pa.array([c.experience_id for c in part], pa.string()),
                    pa.array([c.timestamp for c in part], pa.string()),
                ], schema=schema))
        self.files.append(path)
        self.sizes.append(len(items))
        self._seconds.append(np.array([key[0] for key, _, _ in items], dtype=np.float64))
        self._ids.extend(key[1] for key, _, _ in items)
        self._lines.append(np.array([line for _, line, _ in items], dtype=np.int64))

    def order(self) -> Any:
        """Global row numbers (run offset + row in run) sorted by (timestamp, id, line)."""
        import numpy as np

        if not self.sizes:
            return np.zeros(0, dtype=np.int64)
        _, id_rank = np.unique(np.array(self._ids, dtype=object), return_inverse=True)
        return np.lexsort((np.concatenate(self._lines), id_rank.reshape(-1), np.concatenate(self._seconds)))

    def write_part(self, path: Path, rows: Any, split: str, market: str, samples: list[dict[str, Any]],
                   samples_rows: int) -> None:
        """Write the rows ``rows`` (global row numbers, in output order) as the parquet file ``path`` (a temporary
        file the caller moves into place).

        Rows are gathered :data:`CHUNK_ROWS` at a time; each chunk is one row group. The first rows are appended
        to ``samples`` until it holds ``samples_rows``.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = row_schema()
        offsets = np.cumsum([0, *self.sizes])
        readers = [pa.ipc.open_file(pa.OSFile(str(f), "rb")) for f in self.files]
        loaded: dict[int, tuple[int, Any]] = {}

        def batch(run: int, index: int) -> Any:
            if run not in loaded or loaded[run][0] != index:
                loaded[run] = (index, readers[run].get_batch(index))
            return loaded[run][1]

        with writing(path), pq.ParquetWriter(str(path), schema) as writer:
            if len(rows) == 0:
                writer.write_table(schema.empty_table())
            for start in range(0, len(rows), CHUNK_ROWS):
                wanted = np.asarray(rows[start:start + CHUNK_ROWS])
                run_of = np.searchsorted(offsets, wanted, side="right") - 1
                in_run = wanted - offsets[run_of]
                group = run_of * (int(in_run.max()) // BATCH_ROWS + 1) + in_run // BATCH_ROWS
                placed = np.argsort(group, kind="stable")
                pieces = []
                for key in np.unique(group):
                    picked = in_run[group == key]
                    run, index = int(run_of[group == key][0]), int(picked[0]) // BATCH_ROWS
                    pieces.append(batch(run, index).take(pa.array(picked - index * BATCH_ROWS)))
                gathered = pa.Table.from_batches(pieces).take(pa.array(np.argsort(placed))).combine_chunks()
                count = len(gathered)
                extra = pa.StructArray.from_arrays(
                    [pa.array([split] * count, pa.string()),
                     pa.array(np.arange(start, start + count, dtype=np.int64)),
                     gathered["experience_id"].combine_chunks(), gathered["timestamp"].combine_chunks(),
                     pa.array([market] * count, pa.string())],
                    fields=list(schema.field("extra_info").type))
                reward = pa.StructArray.from_arrays(
                    [pa.array(["rule"] * count, pa.string()), gathered["ground_truth"].combine_chunks()],
                    fields=list(schema.field("reward_model").type))
                chunk = pa.Table.from_arrays(
                    [pa.array([f"tradelab/{market}"] * count, pa.string()), gathered["prompt"].combine_chunks(),
                     pa.array([ABILITY] * count, pa.string()), reward, extra], schema=schema)
                if len(samples) < samples_rows:
                    samples.extend(chunk.slice(0, samples_rows - len(samples)).to_pylist())
                writer.write_table(chunk)


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


def with_reasoning(prompt: list[dict[str, str]], instruction: str | None, system: str) -> list[dict[str, str]]:
    """``prompt`` opening with a system turn (``system``, the advisor's, when it has none) with ``instruction``
    appended to it.

    The soft-thinking fork keeps a rollout in soft mode until ``</think>``; asking for a short reasoning block
    before the answer line makes only that block soft and the answer line discrete. A chat template that adds its
    own default system turn to a conversation without one (SmolLM2's) would otherwise put words in front of the
    advisor's that Stage 1 never showed it. Both texts are fixed, so the prompt stays point-in-time.
    """
    if prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    if not instruction:
        return prompt
    return [{"role": "system", "content": f"{prompt[0]['content'].rstrip()} {instruction}"}, *prompt[1:]]


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
            spill = _Spill(spill_dir, settings.reasoning_instruction, config.llm.prompts.system)
            scan = _stream(source, settings, keep, spill, progress, skip)
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
            spill.write_part(temps["val"], order[val], "val", market, samples, settings.samples_rows)
        finally:
            shutil.rmtree(spill_dir, ignore_errors=True)
        with writing(paths["samples"]):
            temps["samples"].write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in samples),
                                        encoding="utf-8")
        metadata = _metadata(source, scan, settings, config, len(order), paths,
                             {"train": len(train), "val": len(val), "samples": len(samples)},
                             {name: sha256_file(temps[name]) for name in paths})
        with writing(out_dir / METADATA_FILE):
            temps["metadata"].write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
    entry = _manifest_entry(metadata, out_dir / METADATA_FILE, ws)
    set_stage2(root, market, "dataset", entry)
    return {**metadata, "paths": {k: str(ws.resolve(v)) for k, v in entry["paths"].items()},
            "sha256s": entry["sha256s"]}


def _metadata(
    source: Path, scan: _Scan, settings: Any, config: TradelabConfig, kept: int, paths: dict[str, Path],
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
    }
