"""Set-aside experience: a replaced Stage 1 attempt's records stay in the append-only file but count nowhere (the
export, the refinement history, the manifest's counts), and a damaged ledger is refused rather than ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage2_factory import make_record, mixed_records, write_experience

from tradelab.attempts import stage1_experience_start
from tradelab.errors import DataError
from tradelab.fileio import tail_jsonl
from tradelab.manifest_schema import Stage1Section
from tradelab.paths import Workspace
from tradelab.setaside import covered, ledger_path, load_ledger, set_aside
from tradelab.stage1.sections import count_experience


def _attempt(root: Path, first: int, count: int, *, partial: bool = False) -> int:
    """Append ``count`` records (ids from ``first``), optionally a line cut short; return where they began."""
    path = Workspace.at(root).experience_path("NQ")
    start = path.stat().st_size if path.is_file() else 0
    write_experience(root, [make_record(first + i, trend=("up", "down")[i % 2]) for i in range(count)])
    if partial:
        with open(path, "ab") as fh:
            fh.write(json.dumps(make_record(first + count))[:80].encode())
    return start


def test_set_aside_ranges_are_skipped_by_every_reader(tmp_path: Path) -> None:
    path = Workspace.at(tmp_path).experience_path("NQ")
    _attempt(tmp_path, 0, 6)
    killed = _attempt(tmp_path, 6, 4, partial=True)
    (added,) = set_aside(path, killed, reason="killed attempt")
    assert (added.records, added.with_outcome, added.start_byte) == (4, 4, killed)
    assert added.run_ids == ["run1"] and added.end_byte == path.stat().st_size
    # Setting aside what is already set aside adds nothing; the ledger stays disjoint.
    assert set_aside(path, killed, reason="again") == []
    _attempt(tmp_path, 20, 3)  # the redo (a newline first closes the cut-short line, inside the range)
    assert count_experience(path) == (9, 9)
    tail = tail_jsonl(path, 5, skip=covered(load_ledger(path)))
    assert [line.record["id"] for line in tail] == [f"run1-{i:07d}" for i in (4, 5, 20, 21, 22)]
    assert all(line.error is None for line in tail)
    # A second cut-short attempt that began inside the first range adds only its own bytes.
    redo_end = path.stat().st_size
    (later,) = set_aside(path, killed + 10, reason="killed again")
    assert (later.start_byte, later.end_byte, later.records) == (added.end_byte, redo_end, 3)
    assert load_ledger(path).bounds() == [(killed, added.end_byte), (added.end_byte, redo_end)]


def test_the_export_leaves_set_aside_records_out(tmp_path: Path, config) -> None:
    from stage2_factory import fake_stage1

    from tradelab.grpo.dataset import export_dataset

    fake_stage1(tmp_path)
    write_experience(tmp_path, mixed_records(30))
    path = Workspace.at(tmp_path).experience_path("NQ")
    first = export_dataset(tmp_path, "NQ", config)
    killed = path.stat().st_size
    write_experience(tmp_path, [make_record(100 + i) for i in range(7)])
    set_aside(path, killed, reason="killed attempt")
    second = export_dataset(tmp_path, "NQ", config)
    assert second["counts"]["set_aside"] == 7 and second["counts"]["malformed"] == 0
    assert second["sha256s"]["train"] == first["sha256s"]["train"]
    assert second["sha256s"]["val"] == first["sha256s"]["val"]


def test_a_damaged_ledger_is_refused_not_ignored(tmp_path: Path) -> None:
    path = Workspace.at(tmp_path).experience_path("NQ")
    _attempt(tmp_path, 0, 2)
    ledger_path(path).write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="setaside.json: not a readable set-aside ledger"):
        count_experience(path)


def test_a_fresh_stage1_sets_aside_the_run_it_replaces_and_a_resume_keeps_it(tmp_path: Path) -> None:
    path = Workspace.at(tmp_path).experience_path("NQ")
    _attempt(tmp_path, 0, 3)
    begun = _attempt(tmp_path, 3, 2)
    killed = Stage1Section(status="interrupted", run_id="s1-a", experience_from_byte=begun)
    # A --resume continues the interrupted run: its records are the same run's, nothing is set aside.
    assert stage1_experience_start(tmp_path, "NQ", killed, resume=True, run_id="s1-b") == begun
    assert load_ledger(path).ranges == []
    # A fresh run replaces it: its records are set aside, the new run begins at the end.
    assert stage1_experience_start(tmp_path, "NQ", killed, resume=False, run_id="s1-b") == path.stat().st_size
    assert load_ledger(path).bounds() == [(begun, path.stat().st_size)]
    assert count_experience(path) == (3, 3)
    # After a completed run nothing is set aside.
    done = Stage1Section(status="completed", run_id="s1-b", experience_from_byte=0)
    assert stage1_experience_start(tmp_path, "NQ", done, resume=False, run_id="s1-c") == path.stat().st_size
    assert len(load_ledger(path).ranges) == 1
