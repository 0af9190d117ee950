"""Resuming a loop after it stopped: what stopped, and how each unfinished stage is redone.

A loop killed at any moment leaves its state in the manifest with one stage ``running`` (marked ``interrupted`` by
:func:`tradelab.attempts.settle` when the next writer or ``status`` finds its process gone). The resumed loop
records the stop as a :class:`~tradelab.manifest_schema.LoopInterruption` (:func:`record_stop`), skips every
completed stage and prepares the unfinished one (:func:`prepare_redo`):

- Stage 1 runs again from the iteration's recorded inputs (the previous iteration's pinned PPO model and weights);
  the records the cut-short attempt appended to the experience file are set aside first
  (:mod:`tradelab.setaside`), so no record counts twice, and the redone run (same run id, same seeds) writes the
  same records an uninterrupted run would have.
- The Stage 2 export and evaluation run again from scratch; their outputs appear whole or not at all.
- The local engine continues from the last checkpoint the interrupted attempt saved, when it trained on the same
  dataset files; otherwise it runs again from scratch.

Before a later stage is redone, the workspace must still hold what the earlier stages of the iteration produced
(:func:`check_inputs`): a Stage 1 or Stage 2 run made by hand in between is refused rather than mixed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tradelab.errors import StageNotReady
from tradelab.manifest import load_manifest, stage1_of, stage2_of
from tradelab.manifest_schema import LoopInterruption, LoopIteration, LoopSection
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

_ITERATION_STAGE = re.compile(r"^iteration (\d+) (\w+)$")


def activity(number: int | None, stage: str) -> str:
    """What the loop is doing, as kept in ``LoopSection.activity``: ``iteration 2 stage1``, ``iteration 1 report``,
    ``warm_start``, ``report`` (the final one); None between stages."""
    return stage if number is None else f"iteration {number} {stage}"


def record_stop(state: LoopSection) -> LoopInterruption | None:
    """Record why a resumed loop's previous run stopped (nothing when it was not cut short)."""
    if state.status not in ("interrupted", "failed", "running"):
        return None
    number, stage = None, state.activity
    match = _ITERATION_STAGE.match(state.activity or "")
    if match:
        number, stage = int(match.group(1)), match.group(2)
    stopped = LoopInterruption(
        found_at=utc_now(), iteration=number, stage=stage,
        status="failed" if state.status == "failed" else "interrupted",
        error=state.error or "found running with no process behind it")
    if stage is None or (number is not None and _stage_completed(state, number, stage)):
        stopped.redo = "nothing to redo (it stopped between stages)"
    state.interruptions = [*state.interruptions, stopped]
    return stopped


def _stage_completed(state: LoopSection, number: int, stage: str) -> bool:
    for it in state.iterations:
        if it.iteration == number:
            return it.stages.get(stage) == "completed"
    return False


def note_redo(state: LoopSection, number: int | None, stage: str, how: str) -> None:
    """Say what the resumed loop did about the stop at ``(number, stage)`` (adds the stop when none was recorded,
    e.g. an in-process failure)."""
    for stopped in reversed(state.interruptions):
        if stopped.iteration == number and stopped.stage == stage and stopped.redo is None:
            stopped.redo = how
            state.interruptions = list(state.interruptions)
            return
    state.interruptions = [*state.interruptions, LoopInterruption(
        found_at=utc_now(), iteration=number, stage=stage, status="interrupted", error=None, redo=how)]


@dataclass(frozen=True)
class Redo:
    """How an unfinished stage is run again.

    Attributes:
        how: ``afresh`` or ``continued from <checkpoint>`` (the report and the event line say it).
        resume_from: The checkpoint the local engine continues, or None.
    """

    how: str
    resume_from: Path | None = None


def prepare_redo(root: str | Path, market: str, state: LoopSection, iteration: LoopIteration,
                 stage: str) -> Redo | None:
    """Make an unfinished stage ready to run again; None when it never started (its first attempt)."""
    if iteration.stages.get(stage) in (None, "completed"):
        return None
    check_inputs(root, market, state, iteration, stage)
    redo = Redo("afresh")
    if stage == "stage1" and iteration.experience_from_byte is not None:
        from tradelab.setaside import set_aside

        set_aside(Workspace.at(root).experience_path(market), iteration.experience_from_byte,
                  reason=f"loop {state.loop_id} iteration {iteration.iteration}: Stage 1 cut short, redone")
    elif stage == "stage2_engine" and iteration.dataset_sha256s:
        from tradelab.attempts import interrupted_run

        run = interrupted_run(root, market, state.settings.engine, iteration.dataset_sha256s)
        checkpoint = Workspace.at(root).resolve(run.checkpoint) if run is not None else None
        if checkpoint is not None and checkpoint.is_dir():
            redo = Redo(f"continued from {Workspace.at(root).record(checkpoint)}", checkpoint)
    note_redo(state, iteration.iteration, stage, redo.how)
    return redo


def check_inputs(root: str | Path, market: str, state: LoopSection, iteration: LoopIteration, stage: str) -> None:
    """Refuse to redo a stage when the workspace no longer holds this iteration's earlier outputs.

    Raises:
        StageNotReady: Stage 1 or Stage 2 ran outside the loop since it stopped (the message says which).
    """
    if stage == "stage1":
        return
    manifest = load_manifest(root, market)
    stage1 = stage1_of(manifest)
    expected = stage1_run_id(market, state, iteration.iteration)
    # A Stage 1 recorded before run ids were (a loop older than this check) is taken as the loop's own.
    if stage1 is None or stage1.status != "completed" or stage1.run_id not in (expected, None):
        found = "none" if stage1 is None else f"{stage1.run_id or stage1.started_at} ({stage1.status})"
        raise StageNotReady(
            f"{Workspace.at(root).manifest_path(market)}: the loop stopped in iteration {iteration.iteration} "
            f"{stage}, and the market's Stage 1 is now {found}, not the loop's {expected}; a Stage 1 ran outside the "
            "loop since. Run `loop` with --restart")
    if stage == "stage2_engine" and iteration.dataset_sha256s:
        dataset = stage2_of(manifest).dataset
        current = {k: dataset.sha256s.get(k) for k in ("train", "val")} if dataset is not None else {}
        if current != {k: iteration.dataset_sha256s.get(k) for k in ("train", "val")}:
            raise StageNotReady(
                f"{Workspace.at(root).manifest_path(market)}: the loop stopped in iteration {iteration.iteration} "
                "stage2_engine, and the market's Stage 2 dataset is no longer the one this iteration exported; an "
                "export ran outside the loop since. Run `loop` with --restart")
    if stage == "evaluation":
        output = stage2_of(manifest).last_output()
        recorded = iteration.base_out_sha256 or iteration.adapter_out_sha256
        if output is None or (recorded is not None and output.sha256 != recorded):
            raise StageNotReady(
                f"{Workspace.at(root).manifest_path(market)}: the loop stopped in iteration {iteration.iteration} "
                "evaluation, and the market's last Stage 2 output is not the one this iteration recorded; a Stage 2 "
                "ran outside the loop since. Run `loop` with --restart")


def stage1_run_id(market: str, state: LoopSection, number: int) -> str:
    """The run id of iteration ``number``'s Stage 1: the same for every attempt, so a redone run writes the same
    experience records as the attempt it replaces."""
    return f"s1-{market}-{state.loop_id}-i{number}"
