"""The backtest loop: for each seed (and walk-forward window) draw starts once, run every agent, score them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tradelab.evaluation.agents import Agent
from tradelab.evaluation.episode import EpisodeLog
from tradelab.evaluation.runner import run_seed
from tradelab.evaluation.scoring import (
    ScoringContext,
    agent_calibration,
    daily_pnl_usd,
    episode_trades,
    score_agent,
)
from tradelab.evaluation.starts import Window, choose_starts
from tradelab.evaluation.walkforward import Fold, walk_forward_folds

Progress = Callable[[int, int], None]
SeedMetrics = list[tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class EvalSettings:
    """The resolved evaluation settings of one run (config, test-mode overrides and call arguments combined).

    Attributes mirror ``config/evaluation.yaml``; ``seed_list`` holds the actual seeds and ``episode_bars`` is
    resolved (never ``None``).
    """

    episodes: int
    seed_list: list[int]
    episode_bars: int
    start_mode: str
    walk_forward: bool
    walk_forward_windows: int
    random_agent_seed: int
    deterministic_policy: bool
    advisor_query_interval_bars: int
    hit_horizon_bars: int
    calibration_bins: int
    ci_level: float
    plots: bool
    test_mode: bool
    adapter: str
    walk_forward_purge_bars: int = 0
    walk_forward_embargo_bars: int = 0
    cost_sweep: bool = False
    cost_sweep_multiples: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    bootstrap_resamples: int = 2000

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the report, with ``seeds`` as the count."""
        return {**asdict(self), "seeds": len(self.seed_list)}


@dataclass(frozen=True)
class AgentSpec:
    """How to get one agent for a seed, and what it is.

    Attributes:
        name: Report name (``hybrid``, ``ppo``, ``flat`` ...).
        build: Seed -> agent. Heavy agents return one shared instance; baselines build a fresh one per seed.
        uses_advisor: The agent receives advice (advisor metrics apply).
        has_policy: A trained policy picks the actions.
        adapter_path: The LoRA adapter behind its advice, if any.
    """

    name: str
    build: Callable[[int], Agent]
    uses_advisor: bool = False
    has_policy: bool = False
    adapter_path: str | None = None


@dataclass
class BacktestResult:
    """Everything the report needs.

    Attributes:
        windows: The windows evaluated (one covering the holdout without walk-forward).
        starts: Seed -> every start bar used (all windows).
        per_seed: Agent -> ``(seed, metrics)`` over all windows.
        per_window: Per window, agent -> ``(seed, metrics)``; empty without walk-forward.
        daily_pnl: Agent -> seed -> net daily P&L in USD.
        calibration: Advisor-using agent -> calibration table over all seeds.
        bars_seen: Agent -> (lowest, highest) bar index any of its states had.
        paths: Agent -> seed -> every episode's ``(bars, equity_usd)`` at each bar it saw (bar-resolution curves).
        folds: The purged walk-forward folds (empty without walk-forward).
        skipped_bars: Holdout bars left untested in front of the first fold (purge + embargo).
        trades: Every closed trade: agent, seed, window, episode and the :class:`~tradelab.evaluation.ledger.Trade`.
    """

    windows: list[Window]
    starts: dict[int, list[int]] = field(default_factory=dict)
    per_seed: dict[str, SeedMetrics] = field(default_factory=dict)
    per_window: list[dict[str, SeedMetrics]] = field(default_factory=list)
    daily_pnl: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    calibration: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bars_seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, dict[int, list[tuple[list[int], list[float]]]]] = field(default_factory=dict)
    folds: list[Fold] = field(default_factory=list)
    skipped_bars: int = 0


@dataclass(frozen=True)
class BacktestPlan:
    """Where every seed's episodes start: drawn once, before any agent runs.

    Attributes:
        windows: The windows evaluated (the walk-forward test folds, or one covering the holdout).
        starts: ``(seed, window number)`` -> start bars.
        folds: The purged walk-forward folds (empty without walk-forward).
        skipped_bars: Holdout bars left untested in front of the first fold.
    """

    windows: list[Window]
    starts: dict[tuple[int, int], list[int]]
    folds: list[Fold]
    skipped_bars: int

    def episodes(self, seed: int) -> int:
        """Episodes one agent plays for ``seed`` (all windows)."""
        return sum(len(self.starts[(seed, w.window)]) for w in self.windows)


SeedLogs = list[dict[str, list[EpisodeLog]]]
"""One seed's logs: per window (in plan order), agent name -> its episode logs."""


def backtest_plan(session_id: Any, holdout: Window, settings: EvalSettings) -> BacktestPlan:
    """The windows and every seed's episode starts (the same whichever process later runs the seed)."""
    folds: list[Fold] = []
    skipped = 0
    if settings.walk_forward:
        folds, skipped = walk_forward_folds(
            holdout.end_index, holdout.start_index, settings.walk_forward_windows,
            purge_bars=settings.walk_forward_purge_bars, embargo_bars=settings.walk_forward_embargo_bars,
            min_test_bars=settings.episode_bars)
    windows = [f.test for f in folds] if settings.walk_forward else [holdout]
    starts = {(seed, w.window): choose_starts(session_id, w, episodes=settings.episodes, seed=seed + 7919 * w.window,
                                              mode=settings.start_mode, min_bars=settings.episode_bars)
              for seed in settings.seed_list for w in windows}
    return BacktestPlan(windows=windows, starts=starts, folds=folds, skipped_bars=skipped)


def run_seed_windows(env: Any, specs: Sequence[AgentSpec], plan: BacktestPlan, settings: EvalSettings, seed: int,
                     on_episode: Callable[[], None] | None = None) -> SeedLogs:
    """Build the agents of ``seed`` and run them over its starts in every window, in order.

    The agents are built once per seed and keep their state across windows (the random baseline's generator runs
    on), so a seed's windows always run together, in one process.
    """
    agents = {spec.name: spec.build(settings.random_agent_seed + seed) for spec in specs}
    return [run_seed(env, agents, plan.starts[(seed, w.window)], seed=seed, on_episode=on_episode)
            for w in plan.windows]


def run_backtests(
    env: Any, session_id: Any, holdout: Window, specs: Sequence[AgentSpec], ctx: ScoringContext,
    settings: EvalSettings, progress: Progress | None = None,
) -> BacktestResult:
    """Run every agent over every seed (and window) on shared starts and score the results.

    Args:
        env: The holdout env, reset to each start.
        session_id: The market's session column (starts and daily P&L).
        holdout: The holdout bars.
        specs: Agents to run, in report order.
        ctx: Scoring context.
        settings: Resolved settings.
        progress: ``progress(done, total)`` after each episode.
    """
    plan = backtest_plan(session_id, holdout, settings)
    total = len(specs) * sum(len(s) for s in plan.starts.values())
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress:
            progress(done[0], total)

    logs = {seed: run_seed_windows(env, specs, plan, settings, seed, tick) for seed in settings.seed_list}
    return score_backtests(plan, logs, specs, ctx, settings)


def score_backtests(plan: BacktestPlan, logs: dict[int, SeedLogs], specs: Sequence[AgentSpec], ctx: ScoringContext,
                    settings: EvalSettings) -> BacktestResult:
    """Score the logs of every seed (however they were run) into the report's result, seeds in settings order."""
    result = BacktestResult(windows=plan.windows, per_window=[{} for _ in plan.windows] if settings.walk_forward
                            else [], folds=plan.folds, skipped_bars=plan.skipped_bars)
    all_logs: dict[str, list[EpisodeLog]] = {spec.name: [] for spec in specs}
    for seed in settings.seed_list:
        seed_logs: dict[str, list[EpisodeLog]] = {spec.name: [] for spec in specs}
        result.starts[seed] = []
        for w, window_logs in zip(plan.windows, logs[seed]):
            result.starts[seed].extend(plan.starts[(seed, w.window)])
            for spec in specs:
                seed_logs[spec.name].extend(window_logs[spec.name])
                result.trades.extend({"agent": spec.name, "seed": seed, "window": w.window, "episode": log.episode,
                                      **trade.to_dict()}
                                     for log in window_logs[spec.name] for trade in episode_trades(log))
                if settings.walk_forward:
                    metrics = score_agent(window_logs[spec.name], ctx, uses_advisor=spec.uses_advisor,
                                          has_policy=spec.has_policy)
                    result.per_window[w.window].setdefault(spec.name, []).append((seed, metrics))
        _score_seed(result, specs, seed_logs, ctx, seed)
        for name, logs_ in seed_logs.items():
            all_logs[name].extend(logs_)
    result.calibration = {s.name: agent_calibration(all_logs[s.name], ctx) for s in specs if s.uses_advisor}
    result.bars_seen = {name: (min(min(log.bars) for log in logs_), max(max(log.bars) for log in logs_))
                        for name, logs_ in all_logs.items()}
    return result


def _score_seed(
    result: BacktestResult, specs: Sequence[AgentSpec], seed_logs: Mapping[str, list[EpisodeLog]],
    ctx: ScoringContext, seed: int,
) -> None:
    for spec in specs:
        logs = seed_logs[spec.name]
        metrics = score_agent(logs, ctx, uses_advisor=spec.uses_advisor, has_policy=spec.has_policy)
        result.per_seed.setdefault(spec.name, []).append((seed, metrics))
        result.daily_pnl.setdefault(spec.name, {})[seed] = daily_pnl_usd(logs, ctx.session_id)
        result.paths.setdefault(spec.name, {})[seed] = [(list(log.bars), list(log.equity_usd)) for log in logs]
