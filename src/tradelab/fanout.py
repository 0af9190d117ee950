"""Fan work out over tasks: one after another in this process (the default), or as Ray tasks.

:func:`fan_out` maps a module-level task function over picklable task specs. Without a Ray address it is a plain
loop: a run without ``--ray`` is the plain serial run. With one, every spec becomes a Ray remote task; the
results come back in the order of the specs, and the caller merges them as the serial path would.

Each task works in its own workspace folder (:mod:`tradelab.taskspace`) and returns plain results.

An exception inside a task comes back as the same :mod:`tradelab.errors` class with the original message (other
exceptions as :class:`StageFailed` naming their type), so the CLI boundary prints one line as it does for a serial
run. Ray is imported only on the Ray path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tradelab import errors
from tradelab.errors import StageFailed, TradelabError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

LOCAL = "local"
"""``--ray`` without an address: start a private Ray instance on this machine, bound to 127.0.0.1."""

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
