"""The streaming export writes what the whole-file, in-memory export wrote.

The reference below is the export as it was before it streamed: every line through :func:`json.loads`, every kept
row as a dict, sorted by (timestamp, id, line), one ``pa.Table.from_pylist`` and one ``pq.write_table`` per part.
The file mixes what takes the fast path (orjson) with what must not: NaN (only the standard parser reads it), a float
that orjson would write with another exponent form, a non-ASCII id, a DEL character, an integer past 64 bits, equal
timestamps, out-of-order runs, malformed and blank lines and a partial last line.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stage2_factory import START, fake_stage1, make_record, write_experience

from tradelab.config import load_config
from tradelab.grpo import export_scan, export_spill
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.rows import row_schema, with_reasoning
from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.records import check_record
from tradelab.paths import Workspace

SYSTEM = load_config().llm.prompts.system
"""The advisor's system message, which the export puts in front of a prompt that has none."""


def _odd_lines() -> list[str]:
    """Records whose bytes only the standard parser and writer reproduce, plus damaged lines."""
    lines = []
    nan = make_record(3, pnl=-50.0, trend="down")
    nan["id"] = "run2-nan"
    lines.append(json.dumps(nan).replace('"reward": 0.5', '"reward": NaN'))
    tiny = make_record(4)
    tiny["id"], tiny["advice"]["confidence"] = "run2-tiny", 2.5e-05
    lines.append(json.dumps(tiny))
    huge = make_record(5)
    huge["id"], huge["outcome"]["bars_held"] = "run2-huge", 10**25
    lines.append(json.dumps(huge))
    accent = make_record(6, trend="flat")
    accent["id"], accent["outcome"]["exit_reason"] = "run2-é", "stop\x7f"
    lines.append(json.dumps(accent, ensure_ascii=False))
    lines += ["", "{not json", "[1, 2]"]
    return lines


def _records() -> list[dict]:
    """Two runs over overlapping times (so file order is not time order), with equal timestamps across runs."""
    first = [make_record(i, trend=("up", "down", "flat")[i % 3], pnl=(100.0, -80.0, 0.0)[i % 3]) for i in range(30)]
    second = [make_record(i, trend=("down", "up")[i % 2], outcome=i % 7 != 0) for i in range(10, 40, 2)]
    for record in second:
        record["id"] = record["id"].replace("run1", "run0")
        record["run_id"] = "run0"
    late = make_record(1)
    late["id"], late["timestamp"] = "run3-early", (START - timedelta(minutes=1)).isoformat()
    return first + second + [late]


def _reference(path: Path, instruction: str | None, val_fraction: float) -> tuple[bytes, bytes, list[dict]]:
    """The pre-streaming export of ``path``: (train parquet, val parquet, sample rows)."""
    kept = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                check_record(record)
                if record.get("outcome") is None or record["forward"].get("open") == []:
                    continue
                truth = dumps(build_ground_truth(record))
                key = (export_scan._sort_key(record), number)
                kept.append((key, record["id"], record["timestamp"], export_scan._prompt(record), truth))
            except (ValueError, TypeError, KeyError):
                continue
    kept.sort(key=lambda item: item[0])
    n_val = min(len(kept) - 1, max(1, round(len(kept) * val_fraction)))
    parts = {"train": kept[: len(kept) - n_val], "val": kept[len(kept) - n_val:]}
    out, rows_all = {}, []
    for split, part in parts.items():
        rows = [{"data_source": "tradelab/NQ", "prompt": with_reasoning(prompt, instruction, SYSTEM), "ability": "trading",
                 "reward_model": {"style": "rule", "ground_truth": truth},
                 "extra_info": {"split": split, "index": i, "experience_id": eid, "timestamp": stamp,
                                "market": "NQ"}}
                for i, (_, eid, stamp, prompt, truth) in enumerate(part)]
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=row_schema()), sink)
        out[split] = sink.getvalue()
        rows_all += rows
    return out["train"], out["val"], rows_all


@pytest.fixture()
def odd_root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    path = write_experience(root, _records(), extra_lines=_odd_lines())
    with open(path, "ab") as fh:
        fh.write(b'{"id": "partial-last-li')
    fake_stage1(root)
    return root


def _export(root: Path) -> tuple[bytes, bytes, list[dict], dict]:
    config = load_config()
    meta = export_dataset(root, "NQ", config)
    data_dir = Workspace.at(root).soft_grpo_data_dir("NQ")
    samples = [json.loads(line) for line in (data_dir / "stage2_samples.jsonl").read_text().splitlines()]
    return ((data_dir / "stage2_train.parquet").read_bytes(), (data_dir / "stage2_val.parquet").read_bytes(),
            samples, meta)


def test_small_export_is_byte_identical_to_the_in_memory_export(odd_root: Path) -> None:
    settings = load_config().soft_grpo.dataset
    want_train, want_val, want_rows = _reference(Workspace.at(odd_root).experience_path("NQ"),
                                                 settings.reasoning_instruction, settings.val_fraction)
    train, val, samples, meta = _export(odd_root)
    assert train == want_train and val == want_val
    assert samples == want_rows[: settings.samples_rows]
    assert meta["counts"]["malformed"] == 3  # "{not json", "[1, 2]" and the partial last line
    ids = [r["extra_info"]["experience_id"] for r in pq.read_table(io.BytesIO(train)).to_pylist()]
    assert {"run2-nan", "run2-tiny", "run2-huge", "run2-é", "run3-early"} <= set(ids)
    assert ids[0] == "run3-early"  # written last, earliest in time
    assert not list(Workspace.at(odd_root).soft_grpo_data_dir("NQ").glob(".export-*"))  # spill folder removed


def test_many_runs_and_chunks_give_the_same_rows(odd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny runs, batches and chunks: rows gathered across many spilled runs and row groups, same content."""
    settings = load_config().soft_grpo.dataset
    want_train, want_val, want_rows = _reference(Workspace.at(odd_root).experience_path("NQ"),
                                                 settings.reasoning_instruction, settings.val_fraction)
    monkeypatch.setattr(export_scan, "RUN_ROWS", 7)
    monkeypatch.setattr(export_spill, "BATCH_ROWS", 3)
    monkeypatch.setattr(export_spill, "CHUNK_ROWS", 5)
    monkeypatch.setattr(export_scan, "READ_BYTES", 1000)
    train, val, samples, _ = _export(odd_root)
    assert pq.ParquetFile(io.BytesIO(train)).metadata.num_row_groups > 1
    for got, want in ((train, want_train), (val, want_val)):
        assert pq.read_table(io.BytesIO(got)).equals(pq.read_table(io.BytesIO(want)))
    assert samples == want_rows[: settings.samples_rows]


def test_ground_truth_text_matches_json_dumps_or_declines() -> None:
    """The fast writer's text is the standard one whenever it is used."""
    record = make_record(2)
    truth = build_ground_truth(record)
    assert export_scan._ground_truth_text(truth, True) == dumps(truth)
    for odd in (2.5e-05, 1e-07, 1e16, 1.5e300):
        truth["advice"]["confidence"] = odd
        assert export_scan._ground_truth_text(truth, True) is None
        assert export_scan._ground_truth_text(truth, False) == dumps(truth)
    truth["advice"]["confidence"] = 0.5
    truth["market"] = "NQ\x7f"
    assert export_scan._ground_truth_text(truth, True) is None
