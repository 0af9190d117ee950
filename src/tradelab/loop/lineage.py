"""What each loop iteration hands on, pinned, and the check that the recorded lineage matches the files on disk.

The stages write to fixed places that the next run of the same stage replaces (``ppo/final.zip``, ``stage1_lora/``,
``data/soft_grpo/<MKT>/stage2_*.parquet``, ``soft_grpo/adapter/``). The loop pins what an iteration produced in its
own folder, ``models/phase3_hybrid/<MKT>/loop/<loop id>/iteration_<N>/``, as hard links (a copy across file
systems): every writer replaces files by ``os.replace``, so a pinned file keeps its bytes whatever happens to the
original. The next iteration starts from the pins, so a stage redone after an interruption starts from exactly
what the manifest recorded, and :func:`lineage_problems` can check every iteration's hashes against the files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tradelab.errors import DataError
from tradelab.fileio import sha256_dir, sha256_file, staged_dir
from tradelab.manifest_schema import LoopIteration, LoopSection
from tradelab.paths import Workspace

PPO_FILES: tuple[str, ...] = ("final.zip", "vecnormalize.npz", "sha256sums.json")
"""What a continued PPO model needs: the model, its statistics and the sha256 registry its loader checks."""


def iteration_dir(ws: Workspace, market: str, state: LoopSection, number: int) -> Path:
    """``models/phase3_hybrid/<MKT>/loop/<loop id>/iteration_<N>/``."""
    return ws.market_model_dir(market) / "loop" / str(state.loop_id) / f"iteration_{number}"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed there
        shutil.copy2(source, target)


def pin_files(files: list[Path], target: Path) -> Path:
    """Pin ``files`` into the folder ``target`` (replacing it; the folder appears whole or not at all)."""
    with staged_dir(target) as staging:
        for file in files:
            _link_or_copy(file, staging / file.name)
    return target


def pin_dir(source: Path, target: Path) -> Path:
    """Pin the folder ``source`` (every file, relative layout kept) as ``target``."""
    with staged_dir(target) as staging:
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            destination = staging / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(file, destination)
    return target


def require_pinned(ws: Workspace, recorded: str | None, sha256: str | None, what: str) -> Path:
    """The pinned path ``recorded``, after checking it still holds ``sha256``.

    Raises:
        DataError: It is missing or its contents changed (the message names it and the fix).
    """
    path = ws.resolve(recorded)
    problem = _pin_problem(path, sha256)
    if path is None or problem:
        raise DataError(f"{path or what}: {what} {problem or 'was not recorded'}; the loop cannot continue from it, "
                        f"run `loop` with --restart")
    return path


def _pin_problem(path: Path | None, sha256: str | None) -> str | None:
    if path is None or not path.exists():
        return "is missing"
    actual = sha256_dir(path) if path.is_dir() else sha256_file(path)
    return None if sha256 is None or actual == sha256 else f"changed (sha256 {actual[:12]}, recorded {sha256[:12]})"


def lineage_problems(ws: Workspace, state: LoopSection) -> list[str]:
    """Every way the recorded lineage disagrees with itself or with the files on disk (empty when consistent).

    Per iteration whose stages completed: the pinned PPO model, Stage 1 adapter, dataset files and Stage 2 weights
    exist and hash as recorded; from the second iteration on, what went in is what the previous one handed on.
    """
    problems: list[str] = []
    iterations = sorted(state.iterations, key=lambda it: it.iteration)
    for previous, it in zip([None, *iterations], iterations):
        problems += [f"iteration {it.iteration}: {p}" for p in _iteration_problems(ws, it, previous)]
    return problems


def _iteration_problems(ws: Workspace, it: LoopIteration, previous: LoopIteration | None) -> list[str]:
    found: list[str] = []
    done = {stage for stage, status in it.stages.items() if status == "completed"}
    checks: list[tuple[str, str | None, str | None]] = []
    if "stage1" in done:
        checks += [("PPO model", it.ppo_out_path, it.ppo_out_sha256),
                   ("Stage 1 adapter", it.adapter_stage1_path, it.adapter_stage1_sha256)]
        if previous is not None:
            found += _handed_on(it, previous)
    if "stage2_dataset" in done:
        if not it.dataset_paths or not it.dataset_sha256s:
            found.append("the dataset files were not recorded")
        else:
            checks += [(f"dataset {split}", it.dataset_paths.get(split), it.dataset_sha256s.get(split))
                       for split in ("train", "val")]
    if "stage2_engine" in done:
        checks.append(("Stage 2 weights", it.base_out_path or it.adapter_out_path,
                       it.base_out_sha256 or it.adapter_out_sha256))
    for what, recorded, sha256 in checks:
        problem = _pin_problem(ws.resolve(recorded), sha256) if recorded else "was not recorded"
        if problem:
            found.append(f"{what} {recorded}: {problem}")
    return found


def _handed_on(it: LoopIteration, previous: LoopIteration) -> list[str]:
    found = []
    if previous.base_out_sha256 is not None:
        if it.base_in_sha256 != previous.base_out_sha256:
            found.append(f"base in {it.base_in_sha256} is not iteration {previous.iteration}'s model out "
                         f"{previous.base_out_sha256}")
    elif it.adapter_in_sha256 != previous.adapter_out_sha256:
        found.append(f"adapter in {it.adapter_in_sha256} is not iteration {previous.iteration}'s adapter out "
                     f"{previous.adapter_out_sha256}")
    if it.ppo_init != previous.ppo_out_path:
        found.append(f"PPO start {it.ppo_init} is not iteration {previous.iteration}'s model {previous.ppo_out_path}")
    return found
