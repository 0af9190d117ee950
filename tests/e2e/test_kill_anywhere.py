"""Kill it anywhere: a seeded schedule SIGKILLs a real two-iteration test-profile loop at ten points, resuming after
each, and the final workspace is checked against a loop that was never interrupted.

The kill points cover every stage: inside Stage 1 (before and after it appended experience), between Stage 1 and
the export (Stage 1 recorded, the loop not yet), inside the export, inside the local engine (before and after its
first checkpoint), inside evaluation, and while the report is written (after iteration 1 and at the end). The loop
runs as ``python main.py loop ...`` in a subprocess and is killed from outside on what it is seen doing
(tests/kill_harness.py). After ``loop`` is run again with the same arguments:

- every iteration's lineage is complete and consistent (:func:`tradelab.loop.lineage.lineage_problems`, and the
  hand-over checked here directly);
- the experience records that count are exactly the uninterrupted run's, each once; the killed attempts' records
  stay in the file, set aside;
- nothing half-written is left where a reader looks; no record is left ``running``;
- the report lists each iteration once and says which stage was redone;
- the redone stages' outputs equal the uninterrupted run's byte for byte: each iteration's dataset parquet files,
  evaluation trade ledger and Stage 2 adapter weights (the local engine killed after a checkpoint continues from
  it; on CPU that gives the same weights, see the README's reliability section).

Budget: the uninterrupted loop runs alongside the interrupted one; about 3 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from kill_harness import (
    KillOutcome,
    KillPoint,
    experience_grew,
    export_running,
    local_run,
    manifest,
    run_to_end,
    run_until_killed,
    stage1_recorded,
    started,
    writing_report,
)
from workspace_factory import seeded_workspace

from tradelab.fileio import sha256_file
from tradelab.loop.lineage import lineage_problems
from tradelab.manifest import loop_of
from tradelab.paths import Workspace
from tradelab.setaside import covered, load_ledger

SEED = 28
ARGS = ["loop", "--market", "NQ", "--iterations", "2", "--test", "--timesteps", "1024", "--probe-prompts", "16"]

SCHEDULE: list[KillPoint] = [
    KillPoint("iteration 1: inside Stage 1, early", started(1, "stage1"), (0.5, 3.0)),
    KillPoint("iteration 1: inside Stage 1, after it appended experience", experience_grew(1), (0.0, 0.5)),
    KillPoint("iteration 1: between Stage 1 (recorded) and the export", stage1_recorded(1), (0.0, 0.05)),
    KillPoint("iteration 1: inside the export", export_running(1), step=True),
    KillPoint("iteration 1: inside the local engine, after a checkpoint", local_run(1, checkpointed=True),
              (0.0, 0.3)),
    KillPoint("iteration 1: inside evaluation", started(1, "evaluation"), (0.3, 1.5)),
    KillPoint("iteration 1: while the report is written", writing_report(1), step=True),
    KillPoint("iteration 2: inside Stage 1, after it appended experience", experience_grew(2), (0.0, 0.5)),
    KillPoint("iteration 2: inside the local engine, before a checkpoint", local_run(2, checkpointed=False),
              (0.0, 0.2)),
    KillPoint("final report: while it is written", writing_report(None), step=True),
]


@pytest.fixture(scope="module")
def seed_workspace(tmp_path_factory: pytest.TempPathFactory, nq_workspace: Path, tiny_advisor_dir: Path,
                   warm_adapter_dir: Path) -> Path:
    """The shared 30-session NQ market, the tiny advisor and its warm start (so no run trains the warm start)."""
    # Experience is appended every 8 resolved records (not 64), so Stage 1 appends while it runs and a kill lands
    # among its appends rather than at its end.
    return seeded_workspace(tmp_path_factory.mktemp("kill_seed"), nq_workspace, tiny_advisor_dir, warm_adapter_dir,
                            flush_every_records=8)


@pytest.mark.slow
def test_the_loop_resumes_after_sigkill_anywhere(tmp_path: Path, seed_workspace: Path) -> None:
    started_at = time.monotonic()
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    shutil.copytree(seed_workspace, reference)
    shutil.copytree(seed_workspace, killed)
    uninterrupted: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: uninterrupted.update(result=run_to_end(reference, ARGS)))
    runner.start()
    rng = random.Random(SEED)
    outcomes: list[KillOutcome] = []
    for point in SCHEDULE:
        delay = rng.uniform(*point.delay_s)
        outcomes.append(run_until_killed(killed, ARGS, point, delay))
    code, lines = run_to_end(killed, ARGS)
    runner.join()
    elapsed = time.monotonic() - started_at
    _print_outcomes(outcomes, elapsed)
    assert code == 0, "\n".join(lines[-40:])
    ref_code, ref_lines = uninterrupted["result"]
    assert ref_code == 0, "\n".join(ref_lines[-40:])

    _check_kills_landed_in_every_stage(outcomes)
    state = _check_loop_state(killed, outcomes)
    _check_lineage(killed, state)
    _check_experience(killed, reference, state)
    _check_nothing_half_written(killed)
    _check_same_outputs(killed, reference)


def _print_outcomes(outcomes: list[KillOutcome], elapsed: float) -> None:
    print(f"\nfault injection: {len(outcomes)} kills, {elapsed:.0f} s in all (both loops)")  # noqa: T201
    for o in outcomes:
        print(f"  {o.name}: killed after {o.seconds:.1f} s (delay {o.delay_s:.3f} s) while "  # noqa: T201
              f"{o.activity or 'between stages'} {o.detail if o.detail else ''}")


def _check_kills_landed_in_every_stage(outcomes: list[KillOutcome]) -> None:
    landed = {o.name: o.activity for o in outcomes}
    assert landed["iteration 1: inside the export"] == "iteration 1 stage2_dataset"
    assert landed["iteration 1: while the report is written"] == "iteration 1 report"
    assert landed["final report: while it is written"] == "report"
    assert landed["iteration 1: inside evaluation"] == "iteration 1 evaluation"
    assert landed["iteration 1: between Stage 1 (recorded) and the export"] == "iteration 1 stage1"
    for name in ("iteration 1: inside Stage 1, after it appended experience",
                 "iteration 2: inside Stage 1, after it appended experience"):
        assert landed[name] in ("iteration 1 stage1", "iteration 2 stage1"), landed
    for name in ("iteration 1: inside the local engine, after a checkpoint",
                 "iteration 2: inside the local engine, before a checkpoint"):
        assert landed[name].endswith("stage2_engine"), landed


def _check_loop_state(root: Path, outcomes: list[KillOutcome]) -> Any:
    data = manifest(root)
    state = loop_of(data)
    assert state is not None and state.status == "completed"
    assert [it.iteration for it in state.iterations] == [1, 2]
    assert all(status == "completed" for it in state.iterations for status in it.stages.values())
    # One recorded stop per kill, each with what the resumed loop did about it.
    assert len(state.interruptions) == len(outcomes)
    assert all(stop.status == "interrupted" and stop.redo for stop in state.interruptions)
    redos = [(s.iteration, s.stage, s.redo) for s in state.interruptions]
    (engine_redo,) = [r for i, st, r in redos if (i, st) == (1, "stage2_engine")]
    assert engine_redo.startswith("continued from ") and "step_" in engine_redo, redos
    assert [r for i, st, r in redos if (i, st) == (2, "stage2_engine")] == ["afresh"], redos
    assert [r for i, st, r in redos if st == "report"] == ["rewritten", "rewritten"], redos
    # No record is left running; the killed Stage 2 attempts are interrupted, one completed run per iteration.
    runs = data["stage2"]["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "completed", "interrupted", "completed"], runs
    assert "is gone" in runs[0]["error"] and runs[0]["checkpoint"] and runs[1]["resumed_from"]
    assert data["stage1"]["status"] == "completed"
    report = json.loads((Workspace.at(root).resolve(state.report["json"])).read_text())
    assert [it["iteration"] for it in report["iterations"]] == [1, 2]
    redone = {it["iteration"]: sorted(r["stage"] for r in it["redone"]) for it in report["iterations"]}
    assert redone == {1: ["evaluation", "stage1", "stage1", "stage1", "stage2_dataset", "stage2_engine"],
                      2: ["stage1", "stage2_engine"]}, redone
    markdown = Workspace.at(root).resolve(state.report["md"]).read_text()
    assert markdown.count("Redone after an interruption: stage1") == 4 and "## Interruptions" in markdown
    return state


def _check_lineage(root: Path, state: Any) -> None:
    ws = Workspace.at(root)
    assert lineage_problems(ws, state) == []
    first, second = state.iterations
    assert second.adapter_in_sha256 == first.adapter_out_sha256 is not None
    assert second.ppo_init == first.ppo_out_path and ws.resolve(second.ppo_init).is_file()
    for it in state.iterations:
        for split in ("train", "val"):
            assert sha256_file(ws.resolve(it.dataset_paths[split])) == it.dataset_sha256s[split]
            assert it.dataset_constant_answers[split]["rows"] == it.dataset_counts[split]
    current = manifest(root)["stage2"]["dataset"]
    assert current["sha256s"]["train"] == sha256_file(ws.resolve(current["paths"]["train"]))


def _records(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(records that count, records set aside)`` of the experience file, adapter paths made root-relative.

    The adapter's folder hash is left out of the comparison: PEFT writes ``target_modules`` in
    ``adapter_config.json`` in the order of a Python set, which differs between processes (hash randomisation);
    the adapter weights themselves are compared byte for byte in :func:`_check_same_outputs`.
    """
    path = Workspace.at(root).experience_path("NQ")
    aside = covered(load_ledger(path))
    kept, set_aside, offset = [], [], 0
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                target = set_aside if aside(offset) else kept
                try:
                    record = json.loads(raw)
                except ValueError:
                    assert target is set_aside, f"a malformed line that counts at byte {offset}"
                    record = {"malformed": True}
                if isinstance(record.get("adapter"), dict):
                    record["adapter"] = str(Path(record["adapter"]["path"]).relative_to(root))
                target.append(record)
            offset += len(raw)
    return kept, set_aside


def _check_experience(root: Path, reference: Path, state: Any) -> None:
    kept, set_aside = _records(root)
    expected, nothing = _records(reference)
    assert nothing == []
    ids = [r["id"] for r in kept]
    assert len(ids) == len(set(ids)), "a record counts twice"
    assert kept == expected, "the records that count differ from the uninterrupted run's"
    assert set_aside, "the killed Stage 1 attempts' records are kept in the file, set aside"
    run_ids = {f"s1-NQ-{state.loop_id}-i{n}" for n in (1, 2)}
    assert {r.get("run_id") for r in set_aside if "run_id" in r} <= run_ids
    assert manifest(root)["stage1"]["experience_samples"] == len(kept)


def _check_nothing_half_written(root: Path) -> None:
    """Every JSON file parses (all are written by replace), and so does every parquet file and every JSONL line a
    reader reads (reports, answers, Stage 2 samples; the experience file's set-aside tail is checked apart)."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "logs" in path.relative_to(root).parts:
            continue
        top = path.relative_to(root).parts[0]
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".jsonl" and top in ("reports", "data") and path.name != "stage1_experience.jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                json.loads(line)
    ws = Workspace.at(root)
    for entry in manifest(root)["evaluation"]:
        folder = ws.resolve(entry["report_dir"])
        assert {"report.json", "report.md", "trades.jsonl"} <= {p.name for p in folder.iterdir()}
    reports = ws.reports_dir("NQ")
    assert not [p for p in reports.iterdir() if p.name.startswith(".")], "staging folders left in reports/NQ"
    assert len([p for p in reports.iterdir() if not p.name.startswith("loop_")]) == 2, "one report per evaluation"


def _check_same_outputs(root: Path, reference: Path) -> None:
    """The redone stages wrote what an uninterrupted loop wrote (the loop id, and so every pinned path, is the
    same in both workspaces)."""
    ws, ref = Workspace.at(root), Workspace.at(reference)
    state, ref_state = loop_of(manifest(root)), loop_of(manifest(reference))
    assert state.loop_id == ref_state.loop_id
    for it, ref_it in zip(state.iterations, ref_state.iterations):
        for split in ("train", "val"):
            assert ws.resolve(it.dataset_paths[split]).read_bytes() == ref.resolve(
                ref_it.dataset_paths[split]).read_bytes(), f"iteration {it.iteration} {split} parquet differs"
        trades = ws.resolve(it.evaluation.report_dir) / "trades.jsonl"
        assert trades.read_bytes() == (ref.resolve(ref_it.evaluation.report_dir) / "trades.jsonl").read_bytes(), \
            f"iteration {it.iteration} trade ledger differs"
        weights = "adapter_model.safetensors"
        assert (ws.resolve(it.adapter_out_path) / weights).read_bytes() == (
            ref.resolve(ref_it.adapter_out_path) / weights).read_bytes(), f"iteration {it.iteration} adapter differs"
