"""Stage 1 training throughput (env-steps/s) on CPU with the tiny advisor, in three modes.

* ``off``: PPO with the fusion policy, no advisor queries;
* ``batched``: the advice wrapper asks once per vector step for every env that needs advice;
* ``sequential``: the same triggers, but one advisor call per env.

The response cache is off so every query generates. Headline last: ``batched_over_sequential=<x>``.

Usage: ``python bench/stage1_throughput.py [--envs 16] [--steps 2048] [--interval 4]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _measure(mode: str, root: Path, config, arrays, *, n_envs: int, steps: int, interval: int) -> dict:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.utils import set_random_seed

    from tradelab.advisor.generate import Advisor
    from tradelab.stage1.policy import FusionPolicy
    from tradelab.stage1.setup import env_fns
    from tradelab.stage1.source import LLMAdviceSource
    from tradelab.stage1.vec import advice_vec_env, make_probe, normalized

    set_random_seed(0)
    source = None if mode == "off" else LLMAdviceSource(Advisor(config, root, device="cpu"))
    fns = env_fns(root, "NQ", config, arrays, n_envs=n_envs, seed=0, split="train")
    env = advice_vec_env(fns, config.stage1, source=source, batched=mode != "sequential", interval_bars=interval)
    vec = normalized(env, config.ppo)
    model = MaskablePPO(FusionPolicy, vec, n_steps=64, batch_size=256, n_epochs=1, seed=0, device="cpu",
                        policy_kwargs={"net_arch": {"pi": [32], "vf": [32]}, "llm_weight": 1.0,
                                       "confidence_floor": 0.5})
    env.probe = make_probe(model.policy, vec)
    model.learn(n_envs * 64)  # warm-up: first generate calls and allocations
    started = time.perf_counter()
    before = env.stats.queries
    model.learn(steps, reset_num_timesteps=False)
    seconds = time.perf_counter() - started
    summary = env.stats.summary()["llm_stats"]
    return {"steps_per_s": steps / seconds, "seconds": seconds, "queries": env.stats.queries - before,
            "mean_batch": summary["mean_batch_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16, help="parallel envs")
    parser.add_argument("--steps", type=int, default=2048, help="timed env steps per mode")
    parser.add_argument("--interval", type=int, default=4, help="query interval in bars")
    args = parser.parse_args()

    import torch

    from tradelab.advisor.tiny import ensure_tiny_advisor
    from tradelab.config import load_config
    from tradelab.marketdata import generate_market, load_market_arrays

    torch.set_num_threads(1)
    config = load_config(overrides={"llm.generation.cache": False, "llm.device": "cpu"})
    with tempfile.TemporaryDirectory(prefix="tradelab_bench_s1_") as tmp:
        root = Path(tmp)
        generate_market(root, "NQ", config, days=10, seed=7)
        ensure_tiny_advisor(root, config)
        arrays = load_market_arrays(root, "NQ", config)
        results = {}
        for mode in ("off", "batched", "sequential"):
            results[mode] = _measure(mode, root, config, arrays, n_envs=args.envs, steps=args.steps,
                                     interval=args.interval)
            r = results[mode]
            print(f"{mode}: steps_per_s={r['steps_per_s']:.1f} seconds={r['seconds']:.2f} queries={r['queries']} "
                  f"mean_batch={r['mean_batch']:.2f}")
    print(f"envs={args.envs} interval_bars={args.interval} timed_steps={args.steps} torch_threads=1")
    print(f"advisor_overhead_batched={results['off']['steps_per_s'] / results['batched']['steps_per_s']:.2f}")
    ratio = results["batched"]["steps_per_s"] / results["sequential"]["steps_per_s"]
    print(f"batched_over_sequential={ratio:.2f}")


if __name__ == "__main__":
    main()
