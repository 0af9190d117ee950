"""Evaluations of several markets and seeds at once: every (market, seed) a task, on Ray with ``--ray``.

The parent process resolves each market's settings, agents and episode starts (:func:`prepare_evaluation`,
:func:`backtest_plan`), fans the seeds out (:func:`tradelab.fanout.fan_out`), and scores and writes each market's
report from the returned episode logs with the same code a serial run uses (:func:`score_backtests`,
:func:`finish_evaluation`). A seed's walk-forward folds run inside its task: its agents keep their state across
folds (the random baseline's generator runs on), so splitting them would change the figures.

Without a Ray address every market is evaluated in turn by :func:`evaluate`, exactly as one ``evaluate`` call each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import StageFailed
from tradelab.evaluation.backtest import BacktestPlan, EvalSettings, SeedLogs, backtest_plan, score_backtests
from tradelab.evaluation.run import evaluate, finish_evaluation, prepare_evaluation
from tradelab.manifest_schema import EvaluationSummary
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SeedTask:
    """One market's seed, as a task: enough to rebuild the agents and env in a task workspace.

    Attributes:
        parent_root: The workspace the report is written to.
        run: Name of this fan-out (its folder under ``fanout/``).
        market: Market name.
        config: The whole config.
        settings: The market's resolved evaluation settings.
        plan: The market's windows and episode starts.
        seed: The evaluation seed this task runs.
        agents: The agent names the parent's roster holds, in report order (the task checks it builds the same).
    """

    parent_root: str
    run: str
    market: str
    config: TradelabConfig
    settings: EvalSettings
    plan: BacktestPlan
    seed: int
    agents: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"evaluate {self.market} seed {self.seed}"


def run_seed_task(task: SeedTask) -> SeedLogs:
    """Run one seed of one market in its own task workspace; returns the episode logs per window.

    Raises:
        StageFailed: The task workspace's roster differs from the parent's.
    """
    from tradelab.taskspace import link_market, remove_worker_workspace, task_logging, worker_workspace

    with task_logging(task.parent_root, task.label):
        worker = worker_workspace(task.parent_root, task.run, f"{task.market}_seed{task.seed}")
        try:
            link_market(task.parent_root, worker, task.market)
            return _run_seed_in(worker, task)
        finally:
            remove_worker_workspace(worker)


def _run_seed_in(worker: Path, task: SeedTask) -> SeedLogs:
    from tradelab.env import make_env
    from tradelab.evaluation.backtest import env_config, run_seed_windows
    from tradelab.evaluation.holdout import holdout_arrays
    from tradelab.evaluation.roster import build_roster
    from tradelab.manifest import require_stage1
    from tradelab.marketdata import load_market_arrays

    market, config, settings = task.market, task.config, task.settings
    manifest = require_stage1(worker, market)
    arrays, _holdout = holdout_arrays(worker, market, manifest, load_market_arrays(worker, market, config))
    specs, _, _ = build_roster(worker, market, config, settings, config.evaluation.agents, manifest)
    if tuple(s.name for s in specs) != task.agents:
        raise StageFailed(f"{task.label}: the task workspace {worker} yields agents {[s.name for s in specs]}, "
                          f"the parent {list(task.agents)}; the workspace changed while the evaluation ran, run it "
                          "again")
    env = make_env(market, worker, split="holdout", seed=settings.seed_list[0], config=env_config(config, settings),
                   arrays=arrays)
    return run_seed_windows(env, specs, task.plan, settings, task.seed)


def evaluate_markets(
    root: str | Path, markets: Sequence[str], config: TradelabConfig, *, episodes: int | None = None,
    seeds: int | None = None, adapter: str = "stage1", walk_forward: bool | int = False, cost_sweep: bool = False,
    ray_address: str | None = None, progress: Progress | None = None,
) -> list[EvaluationSummary]:
    """Evaluate ``markets`` (arguments as for :func:`evaluate`), one report each, in the order given.

    Args:
        ray_address: None evaluates each market in turn in this process; otherwise every (market, seed) runs as a
            Ray task (see :func:`tradelab.fanout.fan_out` for the address forms).

    Returns:
        One summary per market, as :func:`evaluate` returns it.
    """
    from tradelab.fanout import fan_out
    from tradelab.provenance import utc_stamp

    options: dict[str, Any] = {"episodes": episodes, "seeds": seeds, "adapter": adapter,
                               "walk_forward": walk_forward, "cost_sweep": cost_sweep}
    if ray_address is None:
        return [evaluate(root, market, config, progress=progress, **options) for market in markets]
    preps = [prepare_evaluation(root, market, config, **options) for market in markets]
    plans = [backtest_plan(p.arrays.session_id, p.holdout, p.settings) for p in preps]
    parent = str(Workspace.at(root).root)
    run = f"evaluate_{utc_stamp()}_{os.getpid()}"
    tasks: list[SeedTask] = []
    episodes_of: list[int] = []  # episodes a task plays, all agents together (progress)
    for prep, plan in zip(preps, plans):
        for seed in prep.settings.seed_list:
            tasks.append(SeedTask(parent, run, prep.market, config, prep.settings, plan, seed,
                                  tuple(s.name for s in prep.specs)))
            episodes_of.append(len(prep.specs) * plan.episodes(seed))
    total = sum(episodes_of)
    done = [0]

    def on_done(index: int, _logs: SeedLogs) -> None:
        done[0] += episodes_of[index]
        if progress:
            progress(done[0], total)

    results = fan_out(run_seed_task, tasks, ray_address=ray_address, labels=[t.label for t in tasks],
                      on_done=on_done)
    logs_by_market: dict[str, dict[int, SeedLogs]] = {}
    for task, logs in zip(tasks, results):
        logs_by_market.setdefault(task.market, {})[task.seed] = logs
    return [finish_evaluation(p, score_backtests(plan, logs_by_market[p.market], p.specs, p.ctx, p.settings))
            for p, plan in zip(preps, plans)]
