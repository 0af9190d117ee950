"""The evaluation runner: resolved settings, agents driven through the env on shared episode starts, and the backtest
loop (for each seed and walk-forward window draw starts once, run every agent, score them).

Every agent of a seed is reset to the same start bars with the same reset seed, so all of them trade the same bars;
:func:`run_seed` checks that each agent's first bar really is the requested start and raises otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import ConfigError, StageFailed
from tradelab.evaluation.advisor_metrics import advice_record
from tradelab.evaluation.agents import Agent, advice_to_dict
from tradelab.evaluation.episode import EpisodeLog
from tradelab.evaluation.scoring import ScoringContext, agent_calibration, daily_pnl_usd, episode_trades, score_agent
from tradelab.evaluation.starts import Window, choose_starts
from tradelab.evaluation.walkforward import Fold, walk_forward_folds

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.marketdata.arrays import MarketArrays

START_OPTION = "start_index"
"""``env.reset(options={START_OPTION: bar})`` starts an episode at that bar."""

Progress = Callable[[int, int], None]


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of one episode of one evaluation seed (the same for every agent)."""
    return seed * 100_003 + episode


def reset_at(env: Any, start_index: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Reset ``env`` so its first decision bar is ``start_index``.

    Raises:
        StageFailed: The env started somewhere else (it ignored the requested start).
    """
    obs, info = env.reset(seed=seed, options={START_OPTION: int(start_index)})
    if int(info["bar_index"]) != int(start_index):
        raise StageFailed(
            f"env started at bar {info['bar_index']} instead of the requested {start_index}; evaluation needs "
            f"env.reset(options={{'{START_OPTION}': bar}}) to start episodes where asked"
        )
    return obs, info


def _events(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    bar = int(info["bar_index"])
    return [{"bar_index": bar, **event} for event in info.get("events") or ()]


def run_episode(env: Any, agent: Agent, log: EpisodeLog, *, reset_seed: int) -> EpisodeLog:
    """Play one episode from ``log.start_index`` to termination or truncation, filling ``log``.

    Args:
        env: The holdout env (gymnasium API plus ``action_masks()``).
        agent: The agent to drive; reset here.
        log: An empty log naming the agent, seed, episode and start.
        reset_seed: Seed passed to ``env.reset``.
    """
    agent.reset()
    obs, info = reset_at(env, log.start_index, reset_seed)
    log.record_state(info)
    while True:
        mask = np.asarray(env.action_masks(), dtype=bool)
        action_id, advice = agent.act(obs, info, mask)
        action_id = int(action_id)
        if advice is not None:
            log.advice.append(advice_record(int(info["bar_index"]), advice_to_dict(advice), mask, action_id))
        log.actions.append(action_id)
        obs, _reward, terminated, truncated, info = env.step(action_id)
        log.record_state(info)
        log.events.extend(_events(info))
        if terminated or truncated:
            return log


def run_seed(
    env: Any, agents: Mapping[str, Agent], starts: Sequence[int], *, seed: int,
    on_episode: Callable[[], None] | None = None,
) -> dict[str, list[EpisodeLog]]:
    """Run every agent over the same episode starts.

    Args:
        env: One env reused by every agent (each episode starts from a reset).
        agents: Name -> agent.
        starts: Start bars, shared by all agents.
        seed: Evaluation seed (reset seeds derive from it).
        on_episode: Called after every finished episode (progress).

    Returns:
        Name -> the agent's logs, one per start, in the order of ``starts``.

    Raises:
        StageFailed: Two agents saw different first bars for the same episode.
    """
    logs: dict[str, list[EpisodeLog]] = {}
    for name, agent in agents.items():
        logs[name] = []
        for episode, start in enumerate(starts):
            log = EpisodeLog(agent=name, seed=seed, episode=episode, start_index=int(start))
            logs[name].append(run_episode(env, agent, log, reset_seed=episode_seed(seed, episode)))
            if on_episode:
                on_episode()
    first_bars = {name: [log.bars[0] for log in agent_logs] for name, agent_logs in logs.items()}
    if len({tuple(bars) for bars in first_bars.values()}) > 1:
        raise StageFailed(f"agents started on different bars for seed {seed}: {first_bars}")
    return logs


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
    profile: str
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
        adapter_path: The LoRA adapter (or the whole model, from a full-model engine) behind its advice, if any.
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


def resolve_settings(
    config: TradelabConfig, *, episodes: int | None, seeds: int | None, adapter: str,
    walk_forward: bool | int, cost_sweep: bool = False,
) -> EvalSettings:
    """Combine a resolved config's ``evaluation`` (its run profile laid over it by :func:`tradelab.config.load_config`)
    and the call's arguments (arguments win); the profile's name is recorded.

    ``walk_forward`` is ``False`` (off), ``True`` (``evaluation.walk_forward_windows`` folds) or a fold count.
    """
    ev = config.evaluation
    if not isinstance(walk_forward, bool) and int(walk_forward) < 1:
        raise ConfigError(f"evaluate: --walk-forward {walk_forward}; the number of folds must be at least 1 "
                          "(e.g. --walk-forward 3)")
    folds = ev.walk_forward_windows if walk_forward is True else int(walk_forward)
    n_seeds = seeds if seeds is not None else ev.seeds
    n_episodes = episodes if episodes is not None else ev.episodes
    if n_seeds < 1 or n_episodes < 1:
        raise ConfigError(f"evaluate: episodes={n_episodes}, seeds={n_seeds}; both must be at least 1 "
                          "(pass --episodes N --seeds K with N, K >= 1)")
    episode_bars = ev.episode_bars or config.env.episode_bars
    return EvalSettings(
        episodes=n_episodes, seed_list=[ev.base_seed + k for k in range(n_seeds)], episode_bars=episode_bars,
        start_mode=ev.start_mode, walk_forward=bool(walk_forward), walk_forward_windows=folds,
        random_agent_seed=ev.random_agent_seed, deterministic_policy=ev.deterministic_policy,
        advisor_query_interval_bars=ev.advisor_query_interval_bars,
        hit_horizon_bars=ev.hit_horizon_bars, calibration_bins=ev.calibration_bins, ci_level=ev.ci_level,
        plots=ev.plots, profile=config.profile, adapter=adapter,
        walk_forward_purge_bars=(ev.walk_forward_purge_bars if ev.walk_forward_purge_bars is not None
                                 else config.env.episode_bars),
        walk_forward_embargo_bars=ev.walk_forward_embargo_bars, cost_sweep=bool(cost_sweep or ev.cost_sweep),
        cost_sweep_multiples=tuple(ev.cost_sweep_multiples), bootstrap_resamples=ev.bootstrap_resamples,
    )


def scoring_context(arrays: MarketArrays, config: TradelabConfig, settings: EvalSettings) -> ScoringContext:
    """Market columns and account rules for scoring."""
    from tradelab.marketdata.clock import minutes_before_close, past_point, rule_point_ns
    from tradelab.markets import contract_spec

    rules = config.env.rules
    spec = contract_spec(config, arrays.market)
    flatten_at = rule_point_ns(arrays.session_close_ns, minutes_before_close(rules.flatten_time, spec.session_end))
    return ScoringContext(
        close=arrays.close, past_flatten=past_point(arrays.timestamps_ns, flatten_at), session_id=arrays.session_id,
        starting_balance_usd=rules.starting_balance_usd, trailing_drawdown_usd=rules.trailing_drawdown_usd,
        point_value=spec.point_value,
        hit_horizon_bars=settings.hit_horizon_bars, calibration_bins=settings.calibration_bins,
    )


def env_config(config: TradelabConfig, settings: EvalSettings) -> TradelabConfig:
    """The config the evaluation env runs with: evaluation's episode length, starts set by the runner."""
    env = config.env.model_copy(update={"episode_bars": settings.episode_bars, "random_start": False})
    return config.model_copy(update={"env": env})
