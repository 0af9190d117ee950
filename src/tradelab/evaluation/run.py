"""``evaluate()``: holdout backtests of the trained agents against baselines, written as a report folder.

Flow: require a completed Stage 1 -> load the market arrays and cut them at the holdout recorded in the manifest ->
resolve the settings (test-mode values when Stage 1 ran in test mode) -> build the agents -> for each seed draw the
episode starts once and run every agent on them -> score, aggregate over seeds -> write ``reports/<MKT>/<UTC>/``
(report.json, report.md, trades.jsonl, PNGs) -> append a summary to the manifest's ``evaluation`` list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.evaluation.backtest import (
    AgentSpec,
    BacktestResult,
    EvalSettings,
    env_config,
    resolve_settings,
    run_backtests,
    scoring_context,
)
from tradelab.evaluation.holdout import bar_time, holdout_arrays
from tradelab.evaluation.report import agent_entry, summary_table, write_report
from tradelab.evaluation.roster import build_roster
from tradelab.evaluation.scoring import ScoringContext
from tradelab.evaluation.starts import Window
from tradelab.fileio import atomic_write_text, new_stamped_dir, staged_dir
from tradelab.manifest import EvaluationSummary, append_evaluation, evaluations_of, require_stage1, stage1_of
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, origin, utc_now

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.marketdata.arrays import MarketArrays

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def evaluate(
    root: str | Path, market: str, config: TradelabConfig, *, episodes: int | None = None, seeds: int | None = None,
    adapter: str = "stage1", walk_forward: bool | int = False, cost_sweep: bool = False,
    progress: Progress | None = None,
) -> EvaluationSummary:
    """Backtest every configured agent on the Stage 1 holdout and write a report.

    Args:
        root: Workspace root.
        market: Market name.
        config: Loaded config (``evaluation`` section; ``env`` rules and costs).
        episodes: Episodes per agent and seed; None uses the config (test-mode value when Stage 1 ran in test mode).
        seeds: Number of evaluation seeds; None likewise.
        adapter: ``stage1`` or ``soft_grpo`` for the hybrid/advisor agents, ``none`` to run without the advisor.
        walk_forward: Also score purged, embargoed walk-forward folds: ``True`` for ``evaluation.walk_forward_windows``
            of them, or a fold count.
        cost_sweep: Re-score every agent's trades at ``evaluation.cost_sweep_multiples`` of the costs.
        progress: ``progress(done, total)`` after every episode.

    Returns:
        The summary appended to the manifest: ``report_dir``, ``created_at``, ``agents`` (name -> headline
        metrics), ``table`` (compact rows for display), settings and holdout.

    Raises:
        StageNotReady: Stage 1 has not completed, or the chosen adapter is missing.
        DataError: The bars changed since Stage 1, or the holdout is too short for one episode.
    """
    from tradelab.env import make_env

    prep = prepare_evaluation(root, market, config, episodes=episodes, seeds=seeds, adapter=adapter,
                              walk_forward=walk_forward, cost_sweep=cost_sweep)
    settings = prep.settings
    env = make_env(market, root, split="holdout", seed=settings.seed_list[0], config=env_config(config, settings),
                   arrays=prep.arrays)
    result = run_backtests(env, prep.arrays.session_id, prep.holdout, prep.specs, prep.ctx, settings, progress)
    return finish_evaluation(prep, result)


@dataclass
class PreparedEvaluation:
    """Everything an evaluation needs before its agents run (built in the process that writes the report).

    Attributes:
        root: Workspace root.
        market: Market name.
        config: The whole config.
        manifest: The market's manifest as read at the start.
        settings: Resolved settings.
        arrays: The market's arrays.
        holdout: The holdout window.
        specs: The agents to run (built lazily: nothing is loaded until a spec builds its agent).
        skipped: Agents left out, and why.
        aliases: Report aliases.
        ctx: Scoring context.
    """

    root: str | Path
    market: str
    config: TradelabConfig
    manifest: dict[str, Any]
    settings: EvalSettings
    arrays: MarketArrays
    holdout: Window
    specs: list[AgentSpec]
    skipped: dict[str, str]
    aliases: dict[str, str]
    ctx: ScoringContext


def prepare_evaluation(
    root: str | Path, market: str, config: TradelabConfig, *, episodes: int | None = None, seeds: int | None = None,
    adapter: str = "stage1", walk_forward: bool | int = False, cost_sweep: bool = False,
) -> PreparedEvaluation:
    """Check the prerequisites and resolve settings, holdout and agents (arguments as for :func:`evaluate`)."""
    from tradelab.advisor.bases import with_recorded_base
    from tradelab.marketdata import load_market_arrays

    manifest = require_stage1(root, market)
    config = with_recorded_base(config, root, stage1_of(manifest).base_model)  # the adapters' own base
    settings = resolve_settings(config, episodes=episodes, seeds=seeds, adapter=adapter, walk_forward=walk_forward,
                                cost_sweep=cost_sweep)
    arrays, holdout = holdout_arrays(root, market, manifest, load_market_arrays(root, market, config))
    require_sessions(arrays, config, settings)
    specs, skipped, aliases = build_roster(root, market, config, settings, config.evaluation.agents, manifest)
    return PreparedEvaluation(root, market, config, manifest, settings, arrays, holdout, specs, skipped, aliases,
                              scoring_context(arrays, config, settings))


def require_sessions(arrays: MarketArrays, config: TradelabConfig, settings: EvalSettings) -> None:
    """Refuse, in one line naming the sessions needed and why, a holdout too small for the evaluation asked.

    Raises:
        DataError: No holdout session has room for an episode, or the walk-forward folds, purge and embargo need
            more holdout sessions than there are.
    """
    from tradelab.marketdata.budget import budget_of_arrays, evaluation_refusal, require

    budget = budget_of_arrays(arrays, config.env.holdout_fraction, episode_bars=settings.episode_bars)
    require(evaluation_refusal(
        budget, episode_bars=settings.episode_bars,
        folds=settings.walk_forward_windows if settings.walk_forward else 0,
        purge_bars=settings.walk_forward_purge_bars, embargo_bars=settings.walk_forward_embargo_bars,
        session_starts=settings.start_mode == "session_open"))


def finish_evaluation(prep: PreparedEvaluation, result: BacktestResult) -> EvaluationSummary:
    """Write the report folder of a finished backtest and append its summary to the manifest."""
    from tradelab.marketdata.store import market_origin

    root, market, config, settings = prep.root, prep.market, prep.config, prep.settings
    arrays, holdout, specs = prep.arrays, prep.holdout, prep.specs
    reports = Workspace.at(root).reports_dir(market)
    sweep_report_staging(reports)
    report_dir = new_stamped_dir(reports)
    report = build_report(market, config, settings, arrays, holdout, result, prep.skipped, prep.aliases,
                          {s.name: s.adapter_path for s in specs}, report_dir)
    report["market_origin"] = market_origin(root, market)
    base = stage1_of(prep.manifest).base_model
    report["base_model"] = base.model_dump() if base is not None else None
    report.update(honest_sections(root, market, config, settings, arrays, holdout, result, prep.manifest, report,
                                  trained=[s.name for s in specs if s.has_policy or s.uses_advisor]))
    # The folder appears whole or not at all: a run killed while writing leaves only a staging folder (swept by the
    # next evaluation) beside the empty one its name reserved.
    with staged_dir(report_dir) as staging:
        if settings.plots:
            report["plots"] = write_plots(staging, market, result, settings, arrays, config, report)
        write_report(staging, report)
        atomic_write_text(staging / "trades.jsonl", "".join(json.dumps(t) + "\n" for t in result.trades))
    summary = evaluation_summary(report)
    append_evaluation(root, market, summary)
    log.info("evaluation of %s written to %s", market, report_dir)
    return summary


def sweep_report_staging(reports: Path) -> None:
    """Remove what an evaluation killed while writing left under ``reports/<MKT>/``: its staging folders and the
    empty report folders they were meant to fill (called under the market lock)."""
    import shutil

    if not reports.is_dir():
        return
    for path in sorted(reports.iterdir()):
        if path.name.startswith(".") and path.is_dir():  # staged_dir's staging and set-aside folders
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and not path.name.startswith(("loop_", ".")) and not any(path.iterdir()):
            path.rmdir()


def _selection_figures(intervals: dict[str, Any], name: str) -> dict[str, Any]:
    entry = intervals.get(name)
    return {"psr": entry["psr"], "dsr": entry["dsr"], "days": entry["days"]} if entry else {}


def build_report(
    market: str, config: TradelabConfig, settings: EvalSettings, arrays: MarketArrays, holdout: Window,
    result: BacktestResult, skipped: dict[str, str], aliases: dict[str, str], adapters: dict[str, str | None],
    report_dir: Path,
) -> dict[str, Any]:
    """The ``report.json`` content."""
    from tradelab.config import config_hash
    from tradelab.evaluation.metrics import pooled_ratios

    balance = config.env.rules.starting_balance_usd
    agents = {name: agent_entry(per_seed, settings.ci_level, pooled_ratios(result.daily_pnl[name], balance))
              for name, per_seed in result.per_seed.items()}
    agents = _with_aliases(agents, aliases)
    return {
        "schema_version": SCHEMA_VERSION,
        "market": market,
        "created_at": utc_now(),
        "report_dir": str(report_dir),
        "origin": origin(config_hash(config), settings.seed_list[0], profile=config.profile),
        "settings": {**settings.to_dict(), "agents": list(agents), "skipped_agents": skipped, "aliases": aliases,
                     "adapters": {k: v for k, v in adapters.items() if v}},
        "holdout": _window_dict(arrays, holdout) | {"bars": holdout.end_index - holdout.start_index},
        "bars_seen": {name: {"min": lo, "max": hi} for name, (lo, hi) in result.bars_seen.items()},
        "starts": {str(seed): starts for seed, starts in result.starts.items()},
        "agents": agents,
        "daily_pnl_usd": {name: {str(seed): days for seed, days in by_seed.items()}
                          for name, by_seed in result.daily_pnl.items()},
        "advisor_calibration": result.calibration,
        "walk_forward": [
            {"window": w.window, **_window_dict(arrays, w), **fold.to_dict(),
             "agents": {name: agent_entry(per_seed, settings.ci_level) for name, per_seed in per_window.items()}}
            for w, fold, per_window in zip(result.windows, result.folds, result.per_window)
        ] if settings.walk_forward else None,
        "walk_forward_design": {
            "folds": len(result.folds), "purge_bars": settings.walk_forward_purge_bars,
            "embargo_bars": settings.walk_forward_embargo_bars, "skipped_holdout_bars": result.skipped_bars,
        } if settings.walk_forward else None,
        "plots": [],
    }


def _with_aliases(agents: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """Add each alias as a copy of its run, and keep every hybrid variant next to ``hybrid``."""
    merged = {**agents, **{alias: agents[target] for alias, target in aliases.items()}}
    variants = sorted(name for name in merged if name.startswith("hybrid_"))
    head = ["hybrid", *variants] if "hybrid" in merged else variants
    return {name: merged[name] for name in [*head, *(n for n in merged if n not in head)]}


def _window_dict(arrays: MarketArrays, window: Window) -> dict[str, Any]:
    return {"start_index": window.start_index, "end_index": window.end_index,
            "start": bar_time(arrays, window.start_index), "end": bar_time(arrays, window.end_index - 1)}


def write_plots(report_dir: Path, market: str, result: BacktestResult, settings: EvalSettings, arrays: MarketArrays,
                config: TradelabConfig, report: dict[str, Any]) -> list[str]:
    """Equity/drawdown at bar resolution, trade R-multiples, advisor calibration and the cost sweep; file names."""
    from tradelab.evaluation.plots import (
        plot_calibration,
        plot_cost_sweep,
        plot_equity_drawdown_bars,
        plot_r_multiples,
    )

    seed = settings.seed_list[0]
    agents = [name for name in result.paths]
    paths = [
        plot_equity_drawdown_bars(
            {name: result.paths[name][seed] for name in agents}, arrays.session_id, session_labels(arrays),
            config.env.rules.starting_balance_usd, report_dir / "equity_drawdown.png",
            f"{market} holdout: net P&L and drawdown per bar (seed {seed})"),
        plot_r_multiples({name: [t["r_multiple"] for t in result.trades if t["agent"] == name] for name in agents},
                         report_dir / "r_multiples.png", f"{market} holdout: trade R-multiples (all seeds)"),
    ]
    if result.calibration:
        paths.append(plot_calibration(result.calibration, report_dir / "advisor_calibration.png",
                                      f"{market} advisor calibration ({settings.hit_horizon_bars}-bar direction)"))
    if report.get("cost_sweep"):
        paths.append(plot_cost_sweep(report["cost_sweep"], report_dir / "cost_sweep.png",
                                     f"{market} holdout: net P&L against costs"))
    return [p.name for p in paths]


def session_labels(arrays: MarketArrays) -> list[str]:
    """The date (YYYY-MM-DD, exchange time) of every session id."""
    import numpy as np

    ids = np.asarray(arrays.session_id, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    labels = [""] * (int(ids.max()) + 1 if ids.size else 0)
    for index in first:
        labels[int(ids[index])] = bar_time(arrays, int(index))[:10]
    return labels


def honest_sections(
    root: str | Path, market: str, config: TradelabConfig, settings: EvalSettings, arrays: MarketArrays,
    holdout: Window, result: BacktestResult, manifest: dict[str, Any], report: dict[str, Any], trained: list[str],
) -> dict[str, Any]:
    """The report's ``intervals``, ``selection``, ``regimes``, ``comparisons`` (hybrid minus PPO-only, paired, with its
    minimum detectable effect) and (when asked) ``cost_sweep`` sections."""
    from tradelab.core.tradesim import Costs
    from tradelab.evaluation.compare import comparisons_section
    from tradelab.evaluation.cost_sweep import TradeCosts, cost_sweep
    from tradelab.evaluation.intervals import agent_intervals, trials_from_history
    from tradelab.evaluation.regimes import regime_report, synthetic_regimes
    from tradelab.markets import contract_spec

    current = {"config_hash": report["origin"]["config_hash"], "adapter": settings.adapter,
               "agents": {name: {"sharpe": report["agents"][name].get("sharpe")} for name in result.per_seed}}
    n_trials, trial_sharpes = trials_from_history(
        [e.model_dump() for e in evaluations_of(manifest)], current, trained)
    intervals = {
        name: agent_intervals(
            result.daily_pnl[name], [t for t in result.trades if t["agent"] == name],
            [m for _, m in result.per_seed[name]], starting_balance_usd=config.env.rules.starting_balance_usd,
            level=settings.ci_level, n_trials=n_trials, trial_sharpes=trial_sharpes,
        )
        for name in result.per_seed
    }
    sections: dict[str, Any] = {
        "intervals": intervals,
        "selection": {"n_trials": n_trials, "trial_sharpes": trial_sharpes,
                      "counted": "distinct (config_hash, adapter, trained agent) over the manifest's evaluations"},
        "regimes": regime_report(arrays, (holdout.start_index, holdout.end_index), result.trades,
                                 list(result.per_seed), len(settings.seed_list),
                                 synthetic_regimes(root, market, config, len(arrays))),
        "cost_sweep": None,
        "comparisons": comparisons_section(result.daily_pnl, level=settings.ci_level),
    }
    if settings.cost_sweep:
        sections["cost_sweep"] = cost_sweep(
            result.trades, days_per_seed={name: {seed: len(days) for seed, days in by_seed.items()}
                                          for name, by_seed in result.daily_pnl.items()},
            session_id=arrays.session_id, open_price=arrays.open,
            costs=TradeCosts.from_costs(Costs.from_spec(contract_spec(config, market))),
            multiples=settings.cost_sweep_multiples)
    return sections


def evaluation_summary(report: dict[str, Any]) -> EvaluationSummary:
    """The compact record kept in the manifest and returned to the caller."""
    headline = ("net_pnl_usd", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "profit_factor",
                "expectancy_r", "trades", "drawdown_breaches", "flatten_violations", "parse_rate", "hit_rate",
                "brier_score")
    settings = report["settings"]
    return EvaluationSummary.model_validate({
        "created_at": report["created_at"],
        "report_dir": report["report_dir"],
        "adapter": settings["adapter"],
        "episodes": settings["episodes"],
        "seeds": settings["seeds"],
        "walk_forward": settings["walk_forward"],
        "profile": settings["profile"],
        "config_hash": report["origin"]["config_hash"],
        "holdout": report["holdout"],
        "agents": {name: {k: entry.get(k) for k in headline if k in entry}
                   | _selection_figures(report["intervals"], name)
                   for name, entry in report["agents"].items()},
        "n_trials": report["selection"]["n_trials"],
        "hybrid_minus_ppo": report["comparisons"]["hybrid_minus_ppo"],
        "table": summary_table(report["agents"]),
    })
