"""The experience count reads only what was appended since the last count (a resume never re-reads the buffer)."""

from __future__ import annotations

import json
from pathlib import Path

from tradelab.fileio import append_jsonl
from tradelab.stage1.experience_count import count_experience_file, index_path
from tradelab.stage1.sections import count_experience


def _records(start: int, n: int, *, outcome_every: int = 2) -> list[dict]:
    return [{"id": f"r-{i:07d}", "outcome": {"pnl": 1.0} if i % outcome_every == 0 else None, "pad": "x" * 200}
            for i in range(start, start + n)]


def test_second_count_reads_only_the_appended_tail(tmp_path: Path) -> None:
    path = tmp_path / "stage1_experience.jsonl"
    append_jsonl(path, _records(0, 500))
    first = count_experience_file(path)
    assert (first.records, first.with_outcome, first.from_byte) == (500, 250, 0)
    assert first.bytes_read == path.stat().st_size
    head_size = path.stat().st_size

    # Damage a line well inside the counted part (its length kept, away from the checked ends): a count that
    # re-read the file would now see a malformed line; one that reads only the tail cannot.
    data = bytearray(path.read_bytes())
    middle = data.index(b"\n", head_size // 2) + 1
    data[middle] = ord("#")
    path.write_bytes(bytes(data))
    append_jsonl(path, _records(500, 30, outcome_every=3))

    second = count_experience_file(path)
    assert second.from_byte == head_size
    assert second.bytes_read == path.stat().st_size - head_size
    assert (second.records, second.with_outcome, second.malformed) == (530, 260, 0)
    assert count_experience(path) == (530, 260)  # what the manifest records, from the index alone
    assert count_experience_file(path).bytes_read == 0


def test_partial_last_line_is_counted_then_read_again_once_completed(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    append_jsonl(path, _records(0, 10))
    with open(path, "ab") as fh:
        fh.write(b'{"id": "killed-mid-li')
    assert count_experience(path) == (10, 5)
    assert count_experience_file(path).malformed == 1
    append_jsonl(path, _records(10, 4))  # starts a new line after the partial one
    count = count_experience_file(path)
    assert (count.records, count.with_outcome, count.malformed) == (14, 7, 1)


def test_replaced_file_is_counted_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    append_jsonl(path, _records(0, 40))
    count_experience_file(path)
    path.unlink()
    append_jsonl(path, _records(1000, 60, outcome_every=1))
    count = count_experience_file(path)
    assert (count.records, count.with_outcome, count.from_byte) == (60, 60, 0)


def test_damaged_index_is_ignored_and_missing_file_counts_zero(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    assert count_experience(path) == (0, 0)
    append_jsonl(path, _records(0, 8))
    index_path(path).write_text("{broken", encoding="utf-8")
    assert count_experience(path) == (8, 4)
    assert json.loads(index_path(path).read_text())["records"] == 8
