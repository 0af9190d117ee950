"""Env API: checkers, seeded determinism, no look-ahead, observation layout, context keys, splits."""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any

import numpy as np
import pytest

from tradelab.config import load_config
from tradelab.core import ACTIONS
from tradelab.core.context import AccountContext, MarketContext, PositionContext
from tradelab.env import ADVISOR_SLOT_SIZE, make_env
from tradelab.env.layout import ACCOUNT_FEATURES, POSITION_FEATURES
from tradelab.errors import ConfigError, DataError
from tradelab.marketdata.arrays import MarketArrays


def _rollout(env: Any, n_steps: int, seed: int, reset_seed: int | None = None) -> list[tuple]:
    """Step with seeded random valid actions; returns (obs, reward, terminated, truncated, info, mask) per step."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=reset_seed)
    out = [(obs, 0.0, False, False, info, env.action_masks())]
    for _ in range(n_steps):
        mask = env.action_masks()
        action = int(rng.choice(np.flatnonzero(mask)))
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info, env.action_masks()))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info, env.action_masks()))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[5], y[5])
        assert x[1:5] == y[1:5]


def test_gymnasium_checker(walk_arrays: MarketArrays, config: Any) -> None:
    from gymnasium.utils.env_checker import check_env

    env = make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_sb3_checker(walk_arrays: MarketArrays, config: Any) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=3)
    check_env(env, warn=True)


def test_same_seed_same_rollout(walk_arrays: MarketArrays, config: Any) -> None:
    a = _rollout(make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=5), 1500, seed=1)
    b = _rollout(make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=5), 1500, seed=1)
    _assert_same(a, b)
    assert sum(len(step[4]["events"]) for step in a) > 10  # the rollout actually traded
    c = _rollout(make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=6), 5, seed=1)
    assert c[0][4]["bar_index"] != a[0][4]["bar_index"]


def test_no_look_ahead(walk_arrays: MarketArrays, config: Any) -> None:
    """Replacing every price/feature column after bar t changes nothing the agent sees up to t."""
    start, n_steps = 2000, 300
    seen, actions = _replay(walk_arrays, config, start, None, n_steps)
    t = start + n_steps
    assert seen[-1][2]["bar_index"] == t
    noise = np.random.default_rng(1)
    changed = {}
    for field in ("open", "high", "low", "close", "volume", "atr", "ema_fast", "ema_slow", "rsi", "vwap",
                  "atr_median", "features"):
        col = getattr(walk_arrays, field).copy()
        col[t + 1:] = noise.uniform(1.0, 30_000.0, col[t + 1:].shape)
        changed[field] = col
    replay, _ = _replay(dataclasses.replace(walk_arrays, **changed), config, start, actions, n_steps)
    for (obs_a, mask_a, info_a), (obs_b, mask_b, info_b) in zip(seen, replay, strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(mask_a, mask_b)
        assert json.dumps(info_a, sort_keys=True) == json.dumps(info_b, sort_keys=True)


def _replay(arrays: MarketArrays, config: Any, start: int, actions: list[int] | None, n_steps: int) -> tuple:
    """(obs, mask, info) at every decision bar from ``start``; random valid actions unless ``actions`` given."""
    env = make_env("NQ", "unused", config=config, arrays=arrays)
    obs, info = env.reset(options={"start_index": start})
    rng = np.random.default_rng(0)
    taken, seen = [], [(obs, env.action_masks(), info)]
    for k in range(n_steps):
        action = actions[k] if actions is not None else int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, *_, info = env.step(action)
        taken.append(action)
        seen.append((obs, env.action_masks(), info))
    return seen, taken


def test_context_keys_and_json(walk_arrays: MarketArrays, config: Any) -> None:
    env = make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=2)
    steps = _rollout(env, 400, seed=2)
    sides = set()
    for *_, info, mask in steps:
        ctx = info["market_context"]
        assert set(ctx) == set(MarketContext.__annotations__)
        assert set(ctx["position"]) == set(PositionContext.__annotations__)
        assert set(ctx["account"]) == set(AccountContext.__annotations__)
        assert ctx["bar_index"] == info["bar_index"]
        assert ctx["allowed_actions"] == [a for a, ok in zip(ACTIONS, mask) if ok]
        assert ctx["trend"] in ("up", "down", "flat") and ctx["volatility"] in ("low", "normal", "high")
        assert ctx["timestamp"].endswith("-05:00")
        sides.add(ctx["position"]["side"])
        json.dumps(info, allow_nan=False)
    assert sides == {"flat", "long", "short"}


def test_observation_layout(walk_arrays: MarketArrays, config: Any) -> None:
    env = make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=4)
    window, n_features = config.env.window_bars, walk_arrays.features.shape[1]
    expected = window * n_features + len(POSITION_FEATURES) + len(ACCOUNT_FEATURES) + ADVISOR_SLOT_SIZE
    assert env.observation_space.shape == (expected,)
    assert env.advisor_slot_slice == slice(expected - ADVISOR_SLOT_SIZE, expected) and ADVISOR_SLOT_SIZE == 8
    for obs, *_ in _rollout(env, 300, seed=4):
        assert obs.dtype == np.float32 and np.isfinite(obs).all()
        assert not obs[env.advisor_slot_slice].any()
    obs, info = env.reset(options={"start_index": 3000})
    t = info["bar_index"]
    expected_window = np.clip(np.nan_to_num(walk_arrays.features[t - window + 1: t + 1]), -10, 10).ravel()
    np.testing.assert_array_equal(obs[: window * n_features], expected_window)


def test_splits_and_episode_bounds(walk_arrays: MarketArrays) -> None:
    config = load_config(overrides={"env.episode_bars": 50})
    cut, n = walk_arrays.split_index, len(walk_arrays)
    for split, lo, hi in (("train", 0, cut), ("holdout", cut, n)):
        env = make_env("NQ", "unused", split=split, config=config, arrays=walk_arrays, seed=9)
        assert env.split_bounds == (lo, hi)
        for _ in range(30):
            _, info = env.reset()
            start = info["bar_index"]
            assert lo <= start <= hi - 2
            done, steps = False, 0
            while not done:
                _, _, terminated, truncated, info = env.step(0)
                done, steps = terminated or truncated, steps + 1
            assert info["bar_index"] < hi and steps <= 50
    env = make_env("NQ", "unused", split="holdout", config=config, arrays=walk_arrays)
    _, info = env.reset(options={"start_index": n - 2})
    *_, truncated, info = env.step(0)
    assert truncated and info["bar_index"] == n - 1
    with pytest.raises(ValueError):
        env.reset(options={"start_index": cut - 1})


def test_fixed_start(walk_arrays: MarketArrays) -> None:
    config = load_config(overrides={"env.random_start": False})
    env = make_env("NQ", "unused", split="holdout", config=config, arrays=walk_arrays, seed=1)
    assert env.reset()[1]["bar_index"] == env.reset(seed=99)[1]["bar_index"] == walk_arrays.split_index


def test_bad_split_and_short_data(walk_arrays: MarketArrays, config: Any, make_arrays: Any) -> None:
    with pytest.raises(ConfigError):
        make_env("NQ", "unused", split="test", config=config, arrays=walk_arrays)
    tiny = make_arrays([100.0], [100.0], [100.0], [100.0])
    with pytest.raises(DataError):
        make_env("NQ", "unused", config=config, arrays=tiny)
    with pytest.raises(ConfigError):
        make_env("ES", "unused", config=config, arrays=walk_arrays)


def test_warmup_without_atr_masks_entries(walk_arrays: MarketArrays, config: Any) -> None:
    env = make_env("NQ", "unused", config=config, arrays=walk_arrays)
    env.reset(options={"start_index": 0})
    assert not env.action_masks()[1]  # ATR is NaN for the first 13 bars
    assert env.market_context()["atr"] == 0.0


def test_make_env_on_generated_market(nq_workspace: Any, config: Any) -> None:
    """make_env loads the workspace's arrays itself; a full random episode runs and obeys the split."""
    env = make_env("NQ", nq_workspace, config=config, seed=1)
    holdout = make_env("NQ", nq_workspace, split="holdout", config=config, seed=1)
    assert env.split_bounds[1] == holdout.split_bounds[0] > 0
    steps = _rollout(env, 600, seed=3)
    assert all(np.isfinite(obs).all() and not obs[env.advisor_slot_slice].any() for obs, *_ in steps)
    assert all(step[4]["bar_index"] < env.split_bounds[1] for step in steps)
    assert any(step[4]["events"] for step in steps)


def test_stepping_never_imports_pandas(walk_arrays: MarketArrays, tmp_path: Any) -> None:
    """The step path runs on precomputed numpy/list tables only (checked in a fresh interpreter)."""
    import pickle
    import subprocess
    import sys

    arrays_path = tmp_path / "arrays.pkl"
    arrays_path.write_bytes(pickle.dumps(walk_arrays))
    code = (
        "import pickle, sys\n"
        "from tradelab.config import load_config\n"
        "from tradelab.env import make_env\n"
        f"arrays = pickle.loads(open({str(arrays_path)!r}, 'rb').read())\n"
        "env = make_env('NQ', 'unused', config=load_config(), arrays=arrays)\n"
        "env.reset()\n"
        "for i in range(500):\n"
        "    *_, term, trunc, info = env.step(int(env.action_masks().nonzero()[0][-1]))\n"
        "    if term or trunc:\n"
        "        env.reset()\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
