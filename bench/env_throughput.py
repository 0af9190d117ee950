"""Env stepping throughput on one year of synthetic NQ minute bars.

Prints steps/s for one env, an 8-env DummyVecEnv and (optionally) a SubprocVecEnv, driven by random valid actions
(the mask is read every step, as MaskablePPO does; the random numbers are drawn up front). The single-env figure
is timed in several runs; the best run is the headline (as ``timeit`` does: slower runs measure interference from
other processes on a shared machine), printed last as ``env_steps_per_s=<n>``; the median and the steps per
CPU-second of this process are printed beside it.

Usage: ``python bench/env_throughput.py [--days 252] [--steps 200000] [--repeats 5] [--vec-steps 20000] [--subproc]
[--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from typing import Any

import numpy as np

from tradelab.config import load_config
from tradelab.env import make_env


def _build_arrays(root: str, days: int, seed: int) -> Any:
    from tradelab.marketdata import generate_market, load_market_arrays

    config = load_config()
    generate_market(root, "NQ", config, days=days, seed=seed)
    return config, load_market_arrays(root, "NQ", config)


def run_single(env: Any, n_steps: int, seed: int) -> tuple[float, float]:
    """(wall-clock steps/s, CPU-time steps/s) of one env with random valid actions."""
    uniforms = np.random.default_rng(seed).random(n_steps).tolist()
    env.reset(seed=seed)
    step, masks = env.step, env.action_masks
    start, cpu_start = time.perf_counter(), time.process_time()
    for u in uniforms:
        allowed = masks().nonzero()[0]
        _, _, terminated, truncated, _ = step(allowed[int(u * len(allowed))])
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - start), n_steps / (time.process_time() - cpu_start)


def run_vec(venv: Any, n_steps: int, seed: int) -> tuple[float, float]:
    """(wall-clock, this-process CPU-time) env-steps/s of a vector env with random valid actions per sub-env."""
    n_envs = venv.num_envs
    uniforms = np.random.default_rng(seed).random((n_steps, n_envs))
    venv.seed(seed)
    venv.reset()
    start, cpu_start = time.perf_counter(), time.process_time()
    for row in uniforms:
        masks = np.stack(venv.env_method("action_masks"))
        counts = masks.sum(axis=1)
        picks = (row * counts).astype(np.int64)
        order = np.cumsum(masks, axis=1) - 1
        actions = np.argmax((order == picks[:, None]) & masks, axis=1)
        venv.step(actions)
    total = n_steps * n_envs
    return total / (time.perf_counter() - start), total / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=252, help="synthetic trading days (252 = one year)")
    parser.add_argument("--steps", type=int, default=200_000, help="single-env steps")
    parser.add_argument("--repeats", type=int, default=5, help="single-env runs; the best is the headline")
    parser.add_argument("--vec-steps", type=int, default=20_000, help="vector steps (x 8 env steps)")
    parser.add_argument("--subproc", action="store_true", help="also time an 8-env SubprocVecEnv")
    parser.add_argument("--profile", action="store_true", help="cProfile the single-env loop")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.days, args.steps, args.repeats, args.vec_steps = 5, 500, 1, 50

    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        config, arrays = _build_arrays(root, args.days, seed=7)
        print(f"dataset: {len(arrays)} bars ({args.days} days), built in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        env = make_env("NQ", root, config=config, arrays=arrays, seed=0)
        print(f"env construction (tables): {time.perf_counter() - t0:.2f}s, obs size {env.observation_space.shape[0]}")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run_single, env, min(args.steps, 50_000), 0)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        runs = [run_single(env, args.steps // args.repeats, seed=r) for r in range(args.repeats)]
        walls = sorted(wall for wall, _ in runs)
        single = walls[-1]
        print(f"single env, {args.repeats} runs of {args.steps // args.repeats:,} steps: "
              f"best {single:,.0f} / median {walls[len(walls) // 2]:,.0f} steps/s wall-clock, "
              f"{max(cpu for _, cpu in runs):,.0f} per CPU-second "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

        def factory(i: int) -> Any:
            return lambda: make_env("NQ", root, config=config, arrays=arrays, seed=i)

        dummy = DummyVecEnv([factory(i) for i in range(8)])
        wall, cpu = run_vec(dummy, args.vec_steps, seed=1)
        print(f"DummyVecEnv x8: {wall:,.0f} env-steps/s wall-clock ({cpu:,.0f} per CPU-second)")
        dummy.close()
        if args.subproc:
            sub = SubprocVecEnv([factory(i) for i in range(8)], start_method="fork")
            wall, _ = run_vec(sub, args.vec_steps // 4, seed=2)
            print(f"SubprocVecEnv x8 (8 processes on {os.cpu_count()} cores): {wall:,.0f} env-steps/s wall-clock")
            sub.close()
        print(f"env_steps_per_s={single:.0f}")


if __name__ == "__main__":
    main()
