"""JSONL append and tolerant reading: a partial last line never swallows a record or blocks a reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tradelab.errors import WorkspaceError
from tradelab.fileio import append_jsonl, atomic_write_text, iter_jsonl, new_stamped_dir, tail_jsonl
from tradelab.stage1.sections import count_experience


def _killed_mid_line(path: Path, records: int, cut_bytes: int) -> None:
    append_jsonl(path, [{"id": i, "outcome": {"pnl": i}} for i in range(records)])
    data = path.read_bytes()
    path.write_bytes(data[:-cut_bytes])


def test_append_after_a_partial_line_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    _killed_mid_line(path, 3, 8)
    append_jsonl(path, [{"id": "new", "outcome": None}])
    lines = list(iter_jsonl(path))
    assert [line.record["id"] for line in lines if line.record] == [0, 1, "new"]
    assert [line.number for line in lines if line.record is None] == [3]


def test_append_to_a_clean_file_adds_no_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    append_jsonl(path, [{"id": 1}])
    append_jsonl(path, [{"id": 2}])
    assert path.read_text().splitlines() == ['{"id":1}', '{"id":2}']


def test_count_experience_skips_damaged_lines(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    _killed_mid_line(path, 4, 10)
    with open(path, "ab") as fh:
        fh.write(b"\n\xff\xfe not utf-8\n[1, 2]\n")
    assert count_experience(path) == (3, 3)


def test_iter_jsonl_names_each_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{oops\n"text"\n\xff\n')
    got = [(line.number, line.record, line.error is None) for line in iter_jsonl(path)]
    assert got == [(1, {"a": 1}, True), (3, None, False), (4, None, False), (5, None, False)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_folder_is_a_workspace_error_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(WorkspaceError, match=r"ro/x\.json: cannot write"):
            atomic_write_text(folder / "x.json", json.dumps({}))
        with pytest.raises(WorkspaceError, match=r"ro/e\.jsonl: cannot write"):
            append_jsonl(folder / "e.jsonl", [{"a": 1}])
    finally:
        folder.chmod(0o700)


def test_a_file_where_a_folder_belongs_is_a_workspace_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(WorkspaceError, match="cannot write"):
        atomic_write_text(blocker / "NQ" / "x.json", "{}")


def test_runs_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    first, second = new_stamped_dir(tmp_path, prefix="local_"), new_stamped_dir(tmp_path, prefix="local_")
    assert first.is_dir() and second.is_dir() and first != second
    assert first.name.startswith("local_") and second.name == f"{first.name}-2"


@pytest.mark.parametrize("block_bytes", [7, 64, 1 << 20])
def test_tail_jsonl_returns_the_last_lines_across_block_edges(tmp_path: Path, block_bytes: int) -> None:
    path = tmp_path / "exp.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i % 5)}) for i in range(40)]
    path.write_text("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n")
    got = tail_jsonl(path, 6, block_bytes=block_bytes)
    assert [line.record["i"] for line in got] == list(range(34, 40))
    assert [line.number for line in got] == list(range(1, 7))
    assert [line.record["i"] for line in tail_jsonl(path, 100, block_bytes=block_bytes)] == list(range(40))
    assert tail_jsonl(path, 0) == []


def test_tail_jsonl_reports_a_cut_last_line_as_malformed(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n{"i": 2, "cut')
    got = tail_jsonl(path, 2, block_bytes=5)
    assert got[0].record == {"i": 1} and got[1].record is None and "not valid JSON" in got[1].error
