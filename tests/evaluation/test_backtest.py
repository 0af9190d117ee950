"""Backtests on the real env: holdout isolation, shared starts, advisor scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradelab.advisor.teacher import teacher_response
from tradelab.config import TradelabConfig
from tradelab.core.parse import parse_advice
from tradelab.env import make_env
from tradelab.errors import StageFailed
from tradelab.evaluation.agents import BASELINES, AdvisorAgent, advice_to_dict
from tradelab.evaluation.backtest import (
    AgentSpec,
    env_config,
    resolve_settings,
    run_backtests,
    run_episode,
    run_seed,
    scoring_context,
)
from tradelab.evaluation.episode import EpisodeLog
from tradelab.evaluation.holdout import holdout_arrays
from tradelab.manifest import load_manifest
from tradelab.marketdata import load_market_arrays


def _teacher(contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [advice_to_dict(parse_advice(teacher_response(ctx))) for ctx in contexts]


def _specs() -> list[AgentSpec]:
    specs = [AgentSpec(name, factory) for name, factory in BASELINES.items()]
    return specs + [AgentSpec("advisor", lambda seed: AdvisorAgent(_teacher, 3), uses_advisor=True)]


@pytest.fixture(scope="module")
def setup(eval_root: Path, baseline_config: TradelabConfig) -> dict[str, Any]:
    manifest = load_manifest(eval_root, "NQ")
    arrays, holdout = holdout_arrays(eval_root, "NQ", manifest, load_market_arrays(eval_root, "NQ", baseline_config))
    settings = resolve_settings(baseline_config, episodes=3, seeds=2, adapter="none",
                                walk_forward=True)
    env = make_env("NQ", eval_root, split="holdout", config=env_config(baseline_config, settings), arrays=arrays)
    ctx = scoring_context(arrays, baseline_config, settings)
    result = run_backtests(env, arrays.session_id, holdout, _specs(), ctx, settings)
    return {"arrays": arrays, "holdout": holdout, "settings": settings, "env": env, "result": result}


def test_holdout_never_overlaps_training_bars(setup: dict[str, Any], eval_root: Path,
                                              baseline_config: TradelabConfig) -> None:
    split = setup["holdout"].start_index
    full = load_market_arrays(eval_root, "NQ", baseline_config)
    assert split == full.split_index  # the manifest's holdout start is the data split Stage 1 trained before
    for lo, hi in setup["result"].bars_seen.values():
        assert split <= lo and hi < len(full)
    for starts in setup["result"].starts.values():
        assert all(s >= split for s in starts)
    train_env = make_env("NQ", eval_root, split="train", seed=3, config=baseline_config, arrays=full)
    for episode in range(3):
        _, info = train_env.reset(seed=episode)
        seen = [info["bar_index"]]
        done = False
        while not done:
            _, _, terminated, truncated, info = train_env.step(0)
            seen.append(info["bar_index"])
            done = terminated or truncated
        assert max(seen) < split


def test_every_agent_runs_on_the_same_starts(setup: dict[str, Any]) -> None:
    env, settings = setup["env"], setup["settings"]
    agents = {spec.name: spec.build(1) for spec in _specs()}
    starts = setup["result"].starts[settings.seed_list[0]][:2]
    logs = run_seed(env, agents, starts, seed=5)
    for name, agent_logs in logs.items():
        assert [log.bars[0] for log in agent_logs] == starts, name
        assert [log.start_index for log in agent_logs] == starts
    # the flat agent and a fresh run of it see exactly the same bars
    again = run_seed(env, {"flat": agents["flat"]}, starts, seed=5)
    assert [log.bars for log in again["flat"]] == [log.bars for log in logs["flat"]]


class _IgnoresStart:
    """An env that starts where it likes: the runner must refuse it."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def reset(self, *, seed: int, options: dict) -> Any:
        return self.env.reset(seed=seed, options={"start_index": options["start_index"] + 1})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


def test_runner_refuses_an_env_that_ignores_the_start(setup: dict[str, Any]) -> None:
    start = setup["result"].starts[setup["settings"].seed_list[0]][0]
    with pytest.raises(StageFailed, match="instead of the requested"):
        run_seed(_IgnoresStart(setup["env"]), {"flat": BASELINES["flat"](0)}, [start], seed=0)


def test_logs_match_the_env_rules(setup: dict[str, Any]) -> None:
    env = setup["env"]
    start = setup["result"].starts[setup["settings"].seed_list[0]][0]
    log = run_episode(env, BASELINES["buy_and_hold"](0), EpisodeLog("buy_and_hold", 0, 0, start), reset_seed=1)
    assert len(log.bars) == len(log.actions) + 1
    assert np.all(np.diff(log.bars) == 1)
    assert all(event["bar_index"] in log.bars for event in log.events)
    assert not log.in_position[-1]  # the env closes every position by the end of the episode


def test_results_cover_every_agent_seed_and_window(setup: dict[str, Any]) -> None:
    result, settings = setup["result"], setup["settings"]
    names = [s.name for s in _specs()]
    assert list(result.per_seed) == names
    assert all([seed for seed, _ in result.per_seed[n]] == settings.seed_list for n in names)
    assert len(result.per_window) == settings.walk_forward_windows
    flat = result.per_seed["flat"][0][1]
    assert flat["trades"] == 0 and flat["net_pnl_usd"] == 0.0 and flat["exposure"] == 0.0
    advisor = result.per_seed["advisor"][0][1]
    assert advisor["advice_count"] > 0 and advisor["parse_rate"] == 1.0  # the teacher always parses
    assert advisor["agreement_with_ppo"] is None
    assert "parse_rate" not in result.per_seed["random"][0][1]
    assert sum(row["count"] for row in result.calibration["advisor"]) == pytest.approx(
        sum(m["directional_advice"] for _, m in result.per_seed["advisor"]))
    for _, metrics in result.per_seed["buy_and_hold"]:
        assert metrics["flatten_violations"] == 0 and metrics["overnight_positions"] == 0
        assert metrics["short_trades"] == 0
