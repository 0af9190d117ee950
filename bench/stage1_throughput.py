"""Stage 1 training throughput (env-steps/s) on CPU with the tiny advisor: the advisor on against off, and its levers.

Modes (all at the same query interval, 16 envs by default):

* ``off``: PPO with the fusion policy, no advisor queries;
* ``batched``: the advice wrapper asks once per vector step for every env that needs advice, with every lever off
  (response cache off, generation on the process's torch threads, no trigger filters): the figure before the levers;
* ``sequential``: as ``batched``, but one advisor call per env (:class:`_OneAtATime` splits each batch);
* ``on``: Stage 1 as configured (``config/*.yaml``): the levers that measured faster are on there;
* with ``--levers``, also each lever alone on top of ``batched``: ``threads1`` (``llm.generation.cpu_threads: 1``),
  ``skip_single`` (``stage1.query.skip_single_action``), ``cache`` (``llm.generation.cache``, the discretised
  context key) and ``entries_only`` (``stage1.query.only_when_entries_allowed``).

Beside each throughput the bench prints the advisor's use per 1000 env-steps: ``asks_per_1k`` (envs the triggers
sent to the advisor) and ``generated_per_1k`` (those answered by generation, not the response cache), so a gain from
asking less shows as such. The modes are built once and timed in interleaved rounds (off, batched, ..., off, ...),
so a machine that speeds up or slows down during the run affects every mode alike; each figure is the best round (the
median is printed beside it). By default the advisor is the bare tiny model, whose answers run to
``max_new_tokens``; ``--warm-start`` applies the warm-start adapter first, as Stage 1 does, so answers stop at their
end token and prefill is a larger share of each call. Figures, then the headline last:
``batched_over_sequential=<x>`` (best batched / best sequential env-steps/s) and
``advisor_on_over_off=<x>`` (best ``on`` / best ``off`` env-steps/s).

``--model NAME`` runs a real base instead (a named base such as ``smollm2-135m-instruct``, a ``.gguf`` file or a
model folder; ``--warm-start`` is implied): the modes are then ``off`` and ``on`` only, and beside the ratio the bench
prints its physical bound, the env-steps/s ``on`` could reach if every generated answer cost only its arithmetic at
this machine's measured matmul rate (:mod:`tradelab.advisor.flops`) on top of the ``off`` mode's time per step.

Usage: ``python bench/stage1_throughput.py [--envs 16] [--steps 2048] [--rounds 3] [--interval 4] [--warm-start]
[--levers] [--model NAME] [--adapter DIR] [--smoke]``; ``--smoke`` times one round of 128 steps on 2 envs, asking
every 16 bars for 2-token answers (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

LEVERS_OFF = {"llm.generation.cache": False, "llm.generation.cpu_threads": 0,
              "stage1.query.skip_single_action": False, "stage1.query.only_when_entries_allowed": False}
"""Every lever off: the advisor as Stage 1 ran it before the levers (``batched`` and ``sequential`` modes)."""
LEVER_MODES: dict[str, dict[str, object]] = {
    "threads1": {"llm.generation.cpu_threads": 1},
    "skip_single": {"stage1.query.skip_single_action": True},
    "cache": {"llm.generation.cache": True},
    "entries_only": {"stage1.query.only_when_entries_allowed": True},
}
"""One lever each, on top of :data:`LEVERS_OFF`."""


def mode_overrides(mode: str) -> dict[str, object]:
    """Config overrides of a mode (``on`` and ``off`` run the configuration as it is)."""
    if mode in ("batched", "sequential"):
        return dict(LEVERS_OFF)
    if mode in LEVER_MODES:
        return {**LEVERS_OFF, **LEVER_MODES[mode]}
    return {}


class _OneAtATime:
    """An advice source that answers a batch with one advisor call per context (the ``sequential`` mode)."""

    def __init__(self, source) -> None:
        self.source = source
        self.calls = 0

    def advise(self, contexts):
        self.calls += len(contexts)
        return [result for ctx in contexts for result in self.source.advise([ctx])]

    def adapter_info(self):
        return self.source.adapter_info()


class _Mode:
    """One mode's MaskablePPO + advice VecEnv, built once and timed in rounds (``learn`` continues each time)."""

    def __init__(self, mode: str, root: Path, overrides: dict[str, object], arrays, *, n_envs: int, interval: int,
                 adapter: Path | None, model: str | None = None) -> None:
        from sb3_contrib import MaskablePPO
        from stable_baselines3.common.utils import set_random_seed

        from tradelab.advisor.generate import Advisor
        from tradelab.config import load_config
        from tradelab.stage1.policy import FusionPolicy
        from tradelab.stage1.advice import LLMAdviceSource
        from tradelab.stage1.wiring import advice_vec_env, env_fns, make_probe, normalized

        config = load_config(overrides={"llm.device": "cpu", **overrides, **({"llm.model": model} if model else {})})
        set_random_seed(0)
        self.advisor = None if mode == "off" else Advisor(config, root, adapter_path=adapter, device="cpu")
        source = None if self.advisor is None else LLMAdviceSource(self.advisor)
        if mode == "sequential":
            source = _OneAtATime(source)
        fns = env_fns(root, "NQ", config, arrays, n_envs=n_envs, seed=0, split="train")
        self.env = advice_vec_env(fns, config.stage1, source=source, interval_bars=interval)
        vec = normalized(self.env, config.ppo)
        self.model = MaskablePPO(FusionPolicy, vec, n_steps=64, batch_size=256, n_epochs=1, seed=0, device="cpu",
                                 policy_kwargs={"net_arch": {"pi": [32], "vf": [32]}, "llm_weight": 1.0,
                                                "confidence_floor": 0.5})
        self.env.probe = make_probe(self.model.policy, vec)
        self.model.learn(n_envs * 64)  # warm-up: first generate calls and allocations
        self.seconds: list[float] = []
        self.steps = 0
        self.queries = 0
        self.generated = 0

    def _generated(self) -> int:
        return 0 if self.advisor is None else self.advisor.stats.queries - self.advisor.stats.cache_hits

    def run(self, steps: int) -> None:
        before, generated_before, steps_before = self.env.stats.queries, self._generated(), self.model.num_timesteps
        started = time.perf_counter()
        self.model.learn(steps, reset_num_timesteps=False)
        self.seconds.append(time.perf_counter() - started)
        self.steps += self.model.num_timesteps - steps_before
        self.queries += self.env.stats.queries - before
        self.generated += self._generated() - generated_before

    def summary(self, steps: int) -> dict:
        source = self.env.source
        mean_batch = (self.env.stats.queries / max(source.calls, 1) if isinstance(source, _OneAtATime)
                      else self.env.stats.summary()["llm_stats"]["mean_batch_size"])
        per_1k = 1000.0 / max(self.steps, 1)
        calls = [c for c in self.advisor.stats.calls] if self.advisor is not None else []
        return {"steps_per_s": steps / min(self.seconds), "median_steps_per_s": steps / statistics.median(self.seconds),
                "queries": self.queries, "asks_per_1k": self.queries * per_1k,
                "generated_per_1k": self.generated * per_1k,
                "mean_batch": mean_batch,
                "ms_per_generate": 1000.0 * statistics.mean(c.latency_s for c in calls) if calls else 0.0}


def _print_bound(on: _Mode, results: dict, steps: int) -> None:
    """The ``on`` mode's physical bound: the ``off`` time per step plus, per step, the arithmetic of the answers
    generated (prefill of each prompt's own tokens, one decode step per answer token) at the measured matmul rate."""
    import torch

    from tradelab.advisor.flops import ModelArithmetic, matmul_gflops

    advisor = on.advisor
    shape = ModelArithmetic.of(advisor.model)
    calls = advisor.stats.calls
    flops = 0.0
    for call in calls:
        own = (call.prompt_tokens - call.prefix_tokens) / call.batch_size
        prefix = call.prefix_tokens / call.batch_size
        answer = call.new_tokens / call.batch_size
        flops += call.batch_size * shape.answer_flops(own, prefix, answer)
    answers = sum(call.batch_size for call in calls)
    per_answer = flops / max(answers, 1)
    threads = advisor.generation.cpu_threads or torch.get_num_threads()
    process_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    batch = max(1, round(answers / max(len(calls), 1)))
    rate = matmul_gflops(batch * 64, shape.width, shape.intermediate, int8=advisor.quantized) * 1e9
    torch.set_num_threads(process_threads)
    seconds_off = 1.0 / results["off"]["steps_per_s"]
    per_step = results["on"]["generated_per_1k"] / 1000.0 * per_answer / rate
    bound = 1.0 / (seconds_off + per_step)
    print(f"on_bound: gflop_per_answer={per_answer / 1e9:.2f} generated_per_1k={results['on']['generated_per_1k']:.1f} "
          f"matmul_gflops={rate / 1e9:.0f} ({'int8' if advisor.quantized else 'fp32'}, {threads} threads, "
          f"{batch} x 64 rows) bound_steps_per_s={bound:.1f} bound_on_over_off={bound * seconds_off:.3f} "
          f"measured_share_of_bound={results['on']['steps_per_s'] / bound:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16, help="parallel envs")
    parser.add_argument("--steps", type=int, default=2048, help="timed env steps per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per mode (best and median reported)")
    parser.add_argument("--interval", type=int, default=4, help="query interval in bars")
    parser.add_argument("--warm-start", action="store_true", help="advise with the warm-start adapter applied")
    parser.add_argument("--levers", action="store_true", help="also time each lever alone on top of 'batched'")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: ppo.torch_threads, as Stage 1 uses; 0 = torch's default)")
    parser.add_argument("--model", default=None, help="a real base (named, .gguf or folder): modes off and on")
    parser.add_argument("--adapter", type=Path, default=None, help="advise with this adapter (no warm start)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.envs, args.steps, args.rounds, args.interval = 2, 128, 1, 16
    smoke = {"llm.generation.max_new_tokens": 2} if args.smoke else {}
    if args.model and args.adapter is None:
        args.warm_start = True

    import torch

    from tradelab.advisor.tiny import ensure_tiny_advisor
    from tradelab.config import load_config
    from tradelab.marketdata import generate_market, load_market_arrays

    config = load_config(overrides={"llm.device": "cpu", **({"llm.model": args.model} if args.model else {})})
    modes_run = ("off", "on") if args.model else ("off", "batched", "sequential", "on",
                                                  *(LEVER_MODES if args.levers else ()))
    threads = config.ppo.torch_threads if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="tradelab_bench_s1_") as tmp:
        root = Path(tmp)
        generate_market(root, "NQ", config, days=10, seed=7)
        if args.model:
            from tradelab.advisor.load import resolve_model_dir

            resolve_model_dir(config.llm.base_model, root, config)
        else:
            ensure_tiny_advisor(root, config)
        arrays = load_market_arrays(root, "NQ", config)
        adapter = args.adapter
        if args.warm_start and adapter is None:
            from tradelab.advisor.train import warm_start

            started = time.perf_counter()
            adapter = warm_start(root, config, seed=0, out_dir=root / "warm_adapter")
            print(f"warm_start_s={time.perf_counter() - started:.1f}")
        modes = {mode: _Mode(mode, root, {**mode_overrides(mode), **smoke}, arrays, n_envs=args.envs,
                             interval=args.interval, adapter=adapter, model=args.model)
                 for mode in modes_run}
        for _ in range(args.rounds):  # rounds interleave the modes, so drifting machine speed hits all of them alike
            for mode in modes_run:
                modes[mode].run(args.steps)
        results = {mode: modes[mode].summary(args.steps) for mode in modes_run}
        for mode, r in results.items():
            print(f"{mode}: steps_per_s={r['steps_per_s']:.1f} median_steps_per_s={r['median_steps_per_s']:.1f} "
                  f"asks_per_1k={r['asks_per_1k']:.1f} generated_per_1k={r['generated_per_1k']:.1f} "
                  f"queries={r['queries']} mean_batch={r['mean_batch']:.2f} ms_per_generate={r['ms_per_generate']:.1f}")
        query = config.stage1.query
        print(f"on_levers: cache={config.llm.generation.cache} cpu_threads={config.llm.generation.cpu_threads} "
              f"cpu_int8={config.llm.cpu_int8} skip_single_action={query.skip_single_action} "
              f"only_when_entries_allowed={query.only_when_entries_allowed}")
        if args.model:
            _print_bound(modes["on"], results, args.steps)
    print(f"envs={args.envs} interval_bars={args.interval} rounds={args.rounds} steps_per_round={args.steps} "
          f"torch_threads={torch.get_num_threads()} "
          f"advisor={args.model or 'tiny'} {'+ warm-start adapter' if (args.warm_start or args.adapter) else '(bare)'}")
    if args.model:
        ratio = results["on"]["steps_per_s"] / results["off"]["steps_per_s"]
        print(f"advisor_on_over_off_median={results['on']['median_steps_per_s'] / results['off']['median_steps_per_s']:.3f}")
        print(f"advisor_on_over_off={ratio:.3f} (1/{1 / ratio:.1f})")
        return
    median = results["batched"]["median_steps_per_s"] / results["sequential"]["median_steps_per_s"]
    print(f"batched_over_sequential_median={median:.2f}")
    print(f"advisor_overhead_batched={results['off']['steps_per_s'] / results['batched']['steps_per_s']:.2f}")
    print(f"advisor_on_over_off_median={results['on']['median_steps_per_s'] / results['off']['median_steps_per_s']:.3f}")
    ratio = results["batched"]["steps_per_s"] / results["sequential"]["steps_per_s"]
    print(f"batched_over_sequential={ratio:.2f}")
    print(f"advisor_on_over_off={results['on']['steps_per_s'] / results['off']['steps_per_s']:.3f}")


if __name__ == "__main__":
    main()
