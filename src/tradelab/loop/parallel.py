"""Learning loops over several markets: one after another here, or one Ray task per market with ``--ray``.

On Ray each market's loop runs in its own task workspace (``fanout/<run>/<MKT>/``) holding a copy of the market's
folders (:func:`tradelab.taskspace.copy_market`), so an unfinished loop resumes there as it would here. When every task
has finished, the parent moves each market's outputs into its own workspace (:func:`tradelab.taskspace.adopt_market`):
the manifest, models, Stage 2 data and reports end up where a serial loop would have written them. Inside a market
task the evaluation seeds run one after another (tasks do not start tasks of their own).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.attempts import market_writer
from tradelab.loop.run import run_loop
from tradelab.manifest_schema import LoopSettings
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

Progress = Callable[[int, int], None]
EventSink = Callable[[str], None]


@dataclass(frozen=True)
class LoopTask:
    """One market's loop, as a task.

    Attributes:
        parent_root: The workspace the results are moved into.
        run: Name of this fan-out (its folder under ``fanout/``).
        market: Market name.
        config: The whole config.
        settings: The loop settings (the same for every market).
        restart: Start anew even when an unfinished loop exists.
    """

    parent_root: str
    run: str
    market: str
    config: TradelabConfig
    settings: LoopSettings
    restart: bool

    @property
    def worker_root(self) -> Path:
        from tradelab.taskspace import FANOUT_DIR

        return Path(self.parent_root) / FANOUT_DIR / self.run / self.market


def run_loop_task(task: LoopTask) -> dict[str, Any]:
    """Run one market's loop in its task workspace (left in place for the parent to adopt)."""
    from tradelab.taskspace import copy_market, task_logging, worker_workspace

    with task_logging(task.parent_root, f"loop {task.market}"):
        worker = worker_workspace(task.parent_root, task.run, task.market)
        copy_market(task.parent_root, worker, task.market)
        return run_loop(worker, task.market, task.config, task.settings, restart=task.restart)


def loop_markets(
    root: str | Path, markets: Sequence[str], config: TradelabConfig, settings: LoopSettings, *,
    restart: bool = False, ray_address: str | None = None, on_event: EventSink | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the loop of every market in ``markets``; one result per market, in that order.

    Args:
        ray_address: None runs the markets' loops in turn in this workspace. Otherwise, with one market, its loop
            runs here and each evaluation's seeds are Ray tasks; with several, each market's loop is a Ray task
            (address forms: :func:`tradelab.fanout.fan_out`).

    Returns:
        What :func:`run_loop` returns, per market, with paths in the parent workspace.
    """
    from tradelab.fanout import ray_session

    if ray_address is None or len(markets) == 1:
        results = []
        with ray_session(ray_address):  # one Ray connection for all of a single loop's evaluations
            for market in markets:
                emit = (lambda line, m=market: on_event(f"{m}: {line}")) if on_event and len(markets) > 1 \
                    else on_event
                results.append(run_loop(root, market, config, settings, restart=restart, on_event=emit,
                                        progress=progress, ray_address=ray_address))
        return results
    with contextlib.ExitStack() as held:  # the tasks write copies; the parent holds each market until it adopts them
        for market in sorted(set(markets)):
            held.enter_context(market_writer(root, market, "loop (Ray)"))
        return _fan_out_loops(root, markets, config, settings, restart=restart, ray_address=ray_address,
                              on_event=on_event, progress=progress)


def _fan_out_loops(
    root: str | Path, markets: Sequence[str], config: TradelabConfig, settings: LoopSettings, *, restart: bool,
    ray_address: str, on_event: EventSink | None, progress: Progress | None,
) -> list[dict[str, Any]]:
    """One Ray task per market's loop, then each market's outputs moved into ``root`` (under its lock)."""
    from tradelab.fanout import fan_out
    from tradelab.provenance import utc_stamp
    from tradelab.taskspace import adopt_market, rebase_paths, remove_worker_workspace

    parent = str(Workspace.at(root).root)
    run = f"loop_{utc_stamp()}_{os.getpid()}"
    tasks = [LoopTask(parent, run, market, config, settings, restart) for market in markets]
    finished = [0]

    def on_done(index: int, _result: dict[str, Any]) -> None:
        finished[0] += 1
        if on_event:
            on_event(f"{tasks[index].market}: loop finished on Ray ({finished[0]}/{len(tasks)})")
        if progress:
            progress(finished[0], len(tasks))

    if on_event:
        on_event(f"{len(tasks)} market loop(s) sent to Ray: {', '.join(markets)}")
    results = fan_out(run_loop_task, tasks, ray_address=ray_address, labels=[f"loop {m}" for m in markets],
                      on_done=on_done)
    adopted = []
    for task, result in zip(tasks, results):
        worker = task.worker_root
        adopt_market(worker, parent, task.market)
        adopted.append(rebase_paths(result, str(Workspace.at(worker).root), parent))
        remove_worker_workspace(worker)
    return adopted
