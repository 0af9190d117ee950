"""Task workspaces: the folder each fanned-out task works in, and taking a finished market back.

A task of :func:`tradelab.fanout.fan_out` works in ``<root>/fanout/<run>/<task>/`` (:func:`worker_workspace`). The
workspace is self-contained and relocatable (the manifest records paths relative to its root), so a task links (for
reading) or copies (for writing) the market folders it needs from the parent workspace, and the parent takes a
finished market back with :func:`adopt_market`. Across machines the workspace must sit on a volume every node sees
at the same path (a RunPod network volume, NFS); a task that cannot see it stops with a :class:`WorkspaceError`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradelab.errors import WorkspaceError
from tradelab.paths import MANIFEST_NAME, Workspace

FANOUT_DIR = "fanout"
"""Folder under the workspace root that holds the task workspaces."""


def worker_workspace(parent_root: str | Path, run: str, task: str) -> Path:
    """The folder task ``task`` of fan-out ``run`` works in: ``<parent>/fanout/<run>/<task>/`` (created).

    Raises:
        WorkspaceError: The parent workspace is not visible here (another node without the shared volume), or the
            folder cannot be created.
    """
    parent = Workspace.at(parent_root).root
    if not parent.is_dir():
        raise WorkspaceError(
            f"{parent}: the workspace is not visible on {socket.gethostname()}; a Ray task on another machine needs "
            "the workspace on a volume every node mounts at the same path"
        )
    path = parent / FANOUT_DIR / run / task
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"{parent / FANOUT_DIR}: cannot create the task folder {path.relative_to(parent)} "
                             f"({exc.strerror or type(exc).__name__}); make {FANOUT_DIR}/ a writable folder in the "
                             "workspace (or remove the file of that name)") from exc
    return path


def market_inputs(parent_root: str | Path, market: str) -> list[Path]:
    """Workspace-relative folders a market's stages read: its bars, its model folder, its Stage 2 data, the base
    models (those present)."""
    ws = Workspace.at(parent_root)
    candidates = [ws.data_dir(market), ws.market_model_dir(market), ws.soft_grpo_data_dir(market),
                  ws.root / "models" / "base", ws.root / "config"]
    return [p.relative_to(ws.root) for p in candidates if p.exists()]


def link_market(parent_root: str | Path, worker_root: Path, market: str) -> None:
    """Give ``worker_root`` read access to ``market``'s folders in the parent workspace, as symlinks.

    For tasks that only read (evaluation seeds): nothing is copied. A folder already there is left as it is.
    """
    _place_market(parent_root, worker_root, market, copy=False)


def copy_market(parent_root: str | Path, worker_root: Path, market: str) -> None:
    """Copy ``market``'s folders from the parent workspace into ``worker_root`` (for tasks that write).

    The base models are linked, not copied: they are only read, and the tiny advisor is built in a staging folder
    that replaces the target atomically, so concurrent tasks cannot leave it half written.
    """
    _place_market(parent_root, worker_root, market, copy=True)


def _place_market(parent_root: str | Path, worker_root: Path, market: str, *, copy: bool) -> None:
    parent = Workspace.at(parent_root).root
    for rel in market_inputs(parent, market):
        target = worker_root / rel
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy and rel.parts[:2] != ("models", "base"):
            shutil.copytree(parent / rel, target, symlinks=True)
        else:
            os.symlink(parent / rel, target, target_is_directory=True)


def market_outputs(root: str | Path, market: str) -> list[Path]:
    """Workspace-relative folders that hold everything a market's stages write (those present)."""
    ws = Workspace.at(root)
    candidates = [ws.market_model_dir(market), ws.soft_grpo_data_dir(market), ws.stage1_tensorboard_dir(market),
                  ws.soft_grpo_tensorboard_dir(market)]
    found = [p.relative_to(ws.root) for p in candidates if p.is_dir() and not p.is_symlink()]
    reports = ws.reports_dir(market)
    if reports.is_dir():
        found += [p.relative_to(ws.root) for p in sorted(reports.iterdir()) if p.is_dir()]
    return found


def adopt_market(worker_root: Path, parent_root: str | Path, market: str) -> list[Path]:
    """Move what a task wrote for ``market`` into the parent workspace, as if it had run there.

    The market's model folder, Stage 2 data and TensorBoard folders replace the parent's (as a serial run in the
    parent would have overwritten them); report folders and Stage 2 launch logs are added, and so are base models the
    parent lacks (the tiny advisor a task built). Absolute paths into the task workspace found in
    the manifest and in the report folders' JSON files are rewritten to the parent's.

    Returns:
        The parent paths now holding the task's outputs.
    """
    parent = Workspace.at(parent_root).root
    worker = Workspace.at(worker_root).root
    moved: list[Path] = []
    logs = Workspace.at(worker).soft_grpo_log_dir()
    for log_file in sorted(logs.glob(f"{market}_*")) if logs.is_dir() else []:  # Stage 2 launch logs
        target = Workspace.at(parent).soft_grpo_log_dir() / log_file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(log_file, target)
        moved.append(target)
    base = worker / "models" / "base"
    if base.is_dir() and not base.is_symlink():  # a base model the task built because the parent had none
        for model in sorted(base.iterdir()):
            target = parent / "models" / "base" / model.name
            if model.is_dir() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(model, target)
                moved.append(target)
    for rel in market_outputs(worker, market):
        source, target = worker / rel, parent / rel
        # Only records are rebased: model folders are hashed as they are, and resolve paths against the root.
        if rel.parts[0] == "reports":
            records = list(source.rglob("*.json"))
        else:
            records = [source / MANIFEST_NAME] if (source / MANIFEST_NAME).is_file() else []
        for path in records:
            _rebase_json(path, str(worker), str(parent))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.replaced")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(source, target)
            shutil.rmtree(old)
        else:
            os.replace(source, target)
        moved.append(target)
    return moved


def _rebase_json(path: Path, old_prefix: str, new_prefix: str) -> None:
    """Rewrite every string in a JSON file that starts with ``old_prefix`` (a folder) to start with ``new_prefix``."""
    from tradelab.fileio import atomic_write_text

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not ours to repair; the stage that reads it reports it

    rebased = rebase_paths(data, old_prefix, new_prefix)
    if rebased != data:
        atomic_write_text(path, json.dumps(rebased, indent=2))


def rebase_paths(value: Any, old_prefix: str, new_prefix: str) -> Any:
    """``value`` (plain JSON data) with every string path under the folder ``old_prefix`` moved to ``new_prefix``."""
    if isinstance(value, str) and (value == old_prefix or value.startswith(old_prefix + os.sep)):
        return new_prefix + value[len(old_prefix):]
    if isinstance(value, list):
        return [rebase_paths(v, old_prefix, new_prefix) for v in value]
    if isinstance(value, dict):
        return {k: rebase_paths(v, old_prefix, new_prefix) for k, v in value.items()}
    return value


def remove_worker_workspace(worker_root: Path) -> None:
    """Delete a finished task's folder (links are removed, never followed) and its run folder once empty."""
    shutil.rmtree(worker_root, ignore_errors=True)
    run_dir = worker_root.parent
    try:
        run_dir.rmdir()
        run_dir.parent.rmdir()
    except OSError:
        pass  # other tasks of the run (or other runs) still have folders there


@contextmanager
def task_logging(parent_root: str | Path, label: str) -> Iterator[None]:
    """Inside a Ray task: append tradelab's log records to the parent workspace's ``logs/app.log``, each tagged
    with the task, so a fanned-out run leaves one log like a serial run does (Ray keeps its own worker logs)."""
    path = Workspace.at(parent_root).app_log()
    tradelab_log = logging.getLogger("tradelab")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()  # the task's own error, if any, still reaches the parent
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{label}]: %(message)s"))
    level = tradelab_log.level
    tradelab_log.addHandler(handler)
    tradelab_log.setLevel(logging.INFO)
    try:
        yield
    except Exception:
        tradelab_log.exception("task failed")  # the traceback stays in the log; the parent shows one line
        raise
    finally:
        tradelab_log.removeHandler(handler)
        tradelab_log.setLevel(level)
        handler.close()
