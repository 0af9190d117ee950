"""``status``: every market's state as the CLI and the menu show it, read without taking any market's lock.

For each market: who holds its writer lock (:func:`tradelab.runlock.lock_state`), each stage's state (a run killed
without recording how it stopped is marked ``interrupted`` first, :func:`tradelab.attempts.settle`), the artifacts
the manifest names and whether they exist, and the Stage 2 attempts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradelab.manifest import evaluations_of, load_manifest, loop_of, stage1_of, stage2_of
from tradelab.manifest_schema import LoopSection, Stage1Section
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.runlock import lock_state, run_liveness


def workspace_status(root: str | Path, market: str | None = None) -> dict[str, Any]:
    """Every market's manifest summary: who holds its lock, stages, artifacts (checked for existence), Stage 2 runs.

    A reader: it never takes a market's lock. Records a killed writer left ``running`` are marked ``interrupted``
    first (:func:`tradelab.attempts.settle`; skipped when the workspace cannot be written).
    """
    from tradelab.attempts import settle

    ws = Workspace.at(root)
    markets = [validate_market_name(market)] if market else sorted(
        set(ws.markets_with_data()) | set(ws.markets_with_manifest())
    )
    for name in markets:
        settle(ws.root, name)
    return {"root": str(ws.root), "markets": [_market_status(ws, m) for m in markets]}


def _market_status(ws: Workspace, market: str) -> dict[str, Any]:
    from tradelab.handoff import stage2_output

    manifest = load_manifest(ws.root, market)
    stage1_section = stage1_of(manifest)
    stage2_section = stage2_of(manifest)
    evaluations = evaluations_of(manifest)
    output = stage2_output(ws.root, market, manifest)
    artifacts: dict[str, Path | None] = {"bars": ws.bars_path(market)}
    if stage1_section is not None:
        artifacts.update({
            "ppo_model": ws.resolve(stage1_section.model_checkpoint),
            "vecnormalize": ws.resolve(stage1_section.vecnormalize_path),
            "stage1_lora": ws.resolve(stage1_section.lora_adapter_path),
        })
    artifacts.update({
        "experience": ws.resolve(stage1_section.experience_path if stage1_section else None)
        or ws.experience_path(market),
        "stage2_train": ws.soft_grpo_data_dir(market) / "stage2_train.parquet",
        "stage2_val": ws.soft_grpo_data_dir(market) / "stage2_val.parquet",
        f"stage2_{output.kind if output else 'output'}": ws.resolve(output.path) if output else None,
    })
    dataset = stage2_section.dataset
    loop = loop_of(manifest)
    return {
        "market": market,
        "manifest": str(ws.manifest_path(market)) if manifest else None,
        "lock": lock_state(ws.root, market).to_dict(),
        "stages": {
            "data": "ready" if ws.bars_path(market).exists() else "missing",
            "stage1": _stage1_status(ws, market, stage1_section),
            "stage2_dataset": "exported" if dataset is not None else "not run",
            "stage2_runs": len(stage2_section.runs),
            "evaluations": len(evaluations),
            "loop": _loop_status(loop),
        },
        "artifacts": [
            {"name": name, "path": str(path) if path else None, "exists": bool(path) and Path(path).exists()}
            for name, path in artifacts.items()
        ],
        "runs": [
            {k: getattr(run, k) for k in ("engine", "status", "return_code", "log_file", "started_at", "checkpoint")}
            for run in stage2_section.runs
        ],
        "last_evaluation": evaluations[-1].record() if evaluations else None,
        "base_model": stage1_section.base_model.model_dump() if stage1_section and stage1_section.base_model else None,
    }


def _stage1_status(ws: Workspace, market: str, section: Stage1Section | None) -> str:
    """The section's status; a ``running`` one whose process is gone (a read-only workspace, where it could not be
    marked ``interrupted``) shows as stale."""
    if section is None or section.status is None:
        return f"not run: `python main.py stage1 --market {market} --test` (or a full run) trains it"
    if section.status == "running":
        liveness = run_liveness(ws.root, market, section)
        if liveness == "stale":
            return f"stale: marked running, but pid {section.pid if section.pid is not None else '?'} is gone"
        if liveness == "unknown":
            return f"running on {section.host}"
    if section.status == "interrupted" and section.error:
        return f"interrupted: {section.error}"
    return section.status


def _loop_status(loop: LoopSection | None) -> str:
    """``not run``, or the loop's status with its progress and the stops it recovered from."""
    if loop is None:
        return "not run"
    done = sum(1 for it in loop.iterations if it.stages.get("evaluation") == "completed")
    text = f"{loop.status}: {done}/{loop.settings.iterations} iterations"
    if loop.status != "completed" and loop.activity:
        text += f", at {loop.activity}"
    if loop.interruptions:
        text += f", {len(loop.interruptions)} interruption(s) recovered"
    return text
