"""Fan work out over tasks: one after another in this process (the default), or as Ray tasks.

:func:`fan_out` maps a module-level task function over picklable task specs. Without a Ray address it is a plain
loop, so a run without ``--ray`` behaves exactly as before. With one, every spec becomes a Ray remote task; the
results come back in the order of the specs, and the caller merges them as the serial path would.

Each task works in its own workspace folder, ``<root>/fanout/<run>/<task>/`` (:func:`worker_workspace`): the
workspace is self-contained and relocatable (the manifest records paths relative to its root), so a task links (for
reading) or copies (for writing) the market folders it needs from the parent workspace, and a parent can take a
finished market back with :func:`adopt_market`. Across machines the workspace must sit on a volume every node sees
at the same path (a RunPod network volume, NFS); a task that cannot see it stops with a :class:`WorkspaceError`.

An exception inside a task comes back as the same :mod:`tradelab.errors` class with the original message (other
exceptions as :class:`StageFailed` naming their type), so the CLI boundary prints one line as it does for a serial
run. Ray is imported only on the Ray path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tradelab import errors
from tradelab.errors import StageFailed, TradelabError, WorkspaceError
from tradelab.paths import MANIFEST_NAME, Workspace

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

LOCAL = "local"
"""``--ray`` without an address: start a private Ray instance on this machine, bound to 127.0.0.1."""

FANOUT_DIR = "fanout"
"""Folder under the workspace root that holds the task workspaces."""

LOCAL_NODE_IP = "127.0.0.1"
"""The only address a local Ray instance binds to."""


def fan_out(
    fn: Callable[[T], R], specs: Sequence[T], *, ray_address: str | None = None,
    labels: Sequence[str] | None = None, on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(spec) for spec in specs]``, in this process or as Ray tasks.

    Args:
        fn: A module-level function (Ray pickles it by reference, so the workers import it).
        specs: One picklable spec per task.
        ray_address: None runs the tasks here, one after another (exceptions propagate unchanged);
            :data:`LOCAL` starts a private Ray instance on 127.0.0.1 (or uses the one this process already
            started); anything else is a Ray cluster address (``HOST:PORT`` or ``auto``) passed to ``ray.init``.
        labels: A name per task for error messages (default ``task <i>``).
        on_done: ``on_done(index, result)`` as each task finishes (progress); serially in order, on Ray in the
            order tasks complete.

    Returns:
        The results, in the order of ``specs``.

    Raises:
        TradelabError: The first failed task's error (its own class and message), or Ray could not start or
            reach ``ray_address``.
    """
    names = list(labels) if labels is not None else [f"task {i}" for i in range(len(specs))]
    if ray_address is None:
        results = []
        for index, spec in enumerate(specs):
            result = fn(spec)
            if on_done:
                on_done(index, result)
            results.append(result)
        return results
    return _fan_out_ray(fn, list(specs), names, ray_address, on_done)


def _fan_out_ray(fn: Callable[[T], R], specs: list[T], names: list[str], address: str,
                 on_done: Callable[[int, R], None] | None) -> list[R]:
    import ray

    started_here = _ray_connect(ray, address)
    try:
        remote = ray.remote(max_retries=0)(_guarded)
        refs = [remote.remote(fn, spec) for spec in specs]
        index_of = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index_of[done[0]]
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # the worker died, or Ray lost the task
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise StageFailed(f"{names[i]}: the Ray task failed: {_first_line(exc)}") from exc
            if outcome[0] == "error":
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise _rebuilt_error(names[i], *outcome[1:])
            results[i] = outcome[1]
            if on_done:
                on_done(i, outcome[1])
        return results
    finally:
        if started_here:
            ray.shutdown()


@contextmanager
def ray_session(ray_address: str | None) -> Iterator[None]:
    """Keep one Ray connection open for several :func:`fan_out` calls (a loop's evaluations); no-op for None.

    Raises:
        TradelabError: Ray could not start or reach ``ray_address``.
    """
    if ray_address is None:
        yield
        return
    import ray

    started_here = _ray_connect(ray, ray_address)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def _ray_connect(ray: Any, address: str) -> bool:
    """Connect to ``address`` (or start a local instance); True when this call started Ray and must stop it."""
    if ray.is_initialized():
        return False
    _route_ray_logs()
    try:
        if address == LOCAL:
            init_local_ray()
        else:
            ray.init(address=address, configure_logging=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise TradelabError(
            f"--ray {address}: could not start or reach Ray ({_first_line(exc)}); start the head with "
            "`ray start --head` and pass its HOST:PORT, or give --ray without an address for a local instance"
        ) from exc
    return True


def _route_ray_logs() -> None:
    """Send the driver's Ray log records to our log (``logs/app.log``) instead of the screen: ``import ray`` gives
    its ``ray`` logger a handler of its own on stderr."""
    ray_log = logging.getLogger("ray")
    for handler in [h for h in ray_log.handlers if isinstance(h, logging.StreamHandler)
                    and not isinstance(h, logging.FileHandler)]:
        ray_log.removeHandler(handler)
    ray_log.propagate = True


def init_local_ray(num_cpus: int | None = None) -> None:
    """Start a private Ray instance whose every service binds to 127.0.0.1 (no dashboard; logs go to our log).

    ``address="local"`` never joins a cluster someone else started on this machine. Ray turns a loopback
    ``_node_ip_address`` into the machine's routable address unless it believes clusters are off, so that switch
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``'s constant) is held off while the node starts.

    Args:
        num_cpus: CPUs the instance offers (None: all of this machine's).

    Raises:
        RuntimeError: Ray bound to another address after all (the instance is stopped first).
    """
    import ray
    from ray._private import ray_constants

    _route_ray_logs()
    clusters = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP,
                 configure_logging=False, log_to_driver=False)
    finally:
        if clusters is not None:
            ray_constants.ENABLE_RAY_CLUSTER = clusters
    addresses = {node.get("NodeManagerAddress") for node in ray.nodes()}
    if addresses != {LOCAL_NODE_IP}:
        ray.shutdown()
        raise RuntimeError(f"the local Ray instance bound to {sorted(map(str, addresses))}, not {LOCAL_NODE_IP}")


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
    finally:
        tradelab_log.removeHandler(handler)
        tradelab_log.setLevel(level)
        handler.close()


def _guarded(fn: Callable[[Any], Any], spec: Any) -> tuple[Any, ...]:
    """Run one task inside a Ray worker; an exception becomes a plain record the parent turns back into one."""
    try:
        return ("ok", fn(spec))
    except TradelabError as exc:
        log.exception("task failed")
        return ("error", type(exc).__name__, str(exc), exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as StageFailed
        log.exception("task failed")
        return ("error", type(exc).__name__, str(exc), None)


def _rebuilt_error(label: str, type_name: str, message: str, exit_code: int | None) -> TradelabError:
    """The parent-side exception for a task's error record: the same tradelab class and message."""
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, TradelabError):
        exc = cls(message)
        if exit_code is not None and exit_code != cls.exit_code:
            exc.exit_code = exit_code
        return exc
    return StageFailed(f"{label}: unexpected {type_name}: {message}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# -------------------------------------------------------------------------------------------- task workspaces
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
    parent = Workspace.at(parent_root).root
    for rel in market_inputs(parent, market):
        target = worker_root / rel
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(parent / rel, target, target_is_directory=True)


def copy_market(parent_root: str | Path, worker_root: Path, market: str) -> None:
    """Copy ``market``'s folders from the parent workspace into ``worker_root`` (for tasks that write).

    The base models are linked, not copied: they are only read, and the tiny advisor is built in a staging folder
    that replaces the target atomically, so concurrent tasks cannot leave it half written.
    """
    parent = Workspace.at(parent_root).root
    for rel in market_inputs(parent, market):
        target = worker_root / rel
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[:2] == ("models", "base"):
            os.symlink(parent / rel, target, target_is_directory=True)
        else:
            shutil.copytree(parent / rel, target, symlinks=True)


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
    from tradelab.io import atomic_write_text

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
