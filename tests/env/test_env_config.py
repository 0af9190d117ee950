"""Env config: cross-field validation and a MaskablePPO smoke run on the env."""

from __future__ import annotations

from typing import Any

import pytest

from tradelab.config import load_config
from tradelab.env import make_env
from tradelab.errors import ConfigError
from tradelab.marketdata.arrays import MarketArrays


def test_entry_cutoff_after_flatten_is_rejected() -> None:
    with pytest.raises(ConfigError, match="entry_cutoff 15:58 is after flatten_time 15:55"):
        load_config(overrides={"env.rules.entry_cutoff": "15:58"})


def test_maskable_ppo_learns_a_few_steps(walk_arrays: MarketArrays, config: Any) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([lambda i=i: make_env("NQ", "unused", config=config, arrays=walk_arrays, seed=i)
                        for i in range(2)])
    venv = VecNormalize(venv, norm_reward=False)
    model = MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps == 64
