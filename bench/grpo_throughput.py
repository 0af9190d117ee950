"""Local GRPO engine throughput: rollout tokens/s and optimizer steps/s, SofT-GRPO (soft) vs plain GRPO (discrete).

Uses the embedded tiny advisor with a fresh LoRA adapter (so answers run to ``--max-new-tokens`` and every run
generates the same number of tokens) and prompts built from synthetic market contexts. ``--hidden-size`` /
``--layers`` swap in a larger randomly initialised Llama with the same tokenizer, for GPU runs. The reward is a
fixed pseudo-random function of the answer text: the reward has its own bench, this one measures the engine.

Soft mode thinks from the first answer token for the whole answer (every step is a soft step), which is its
worst case. Figures are the best of ``--repeats`` (slower repeats measure interference on a shared machine).
Printed per mode: ``<mode>_rollout_tokens_per_s``, ``<mode>_steps_per_s``, ``<mode>_step_tokens_per_s``; the
headline last: ``soft_tokens_per_s=<n>`` (soft rollout tokens/s).

Usage: ``python bench/grpo_throughput.py [--device cpu|cuda] [--prompts 4] [--group 8] [--max-new-tokens 32]
[--steps 2] [--repeats 2] [--hidden-size 0] [--layers 0] [--threads 0] [--smoke]``; ``--smoke`` runs one step of 2
prompts x 2 answers x 4 tokens (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from tradelab.advisor.prompts import build_messages
from tradelab.advisor.synth import random_contexts
from tradelab.advisor.tiny import ensure_tiny_advisor
from tradelab.config import load_config
from tradelab.grpo.local.data import PromptRow, encode_prompt
from tradelab.grpo.local.model import stop_spec, trainable_parameters
from tradelab.grpo.local.rollout import generate
from tradelab.grpo.local.step import StepContext, run_step, sampling_spec
from tradelab.grpo.local.train import build_optimizer


def _reward(data_source: str, text: str, ground_truth: str, extra_info: Any = None) -> dict[str, float]:
    digest = hashlib.sha256(text.encode()).digest()
    return {"score": digest[0] / 255.0, "format": 1.0}


def _model(model_dir: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if args.hidden_size and args.layers:
        base_cfg = LlamaConfig.from_pretrained(model_dir)
        base_cfg.hidden_size, base_cfg.num_hidden_layers = args.hidden_size, args.layers
        base_cfg.intermediate_size, base_cfg.head_dim = 4 * args.hidden_size, 64
        base_cfg.num_attention_heads = base_cfg.num_key_value_heads = args.hidden_size // 64
        torch.manual_seed(0)
        base = LlamaForCausalLM(base_cfg)
    else:
        base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(base.to(args.device), lora).eval()
    return model, tokenizer


def _context(model: Any, tokenizer: Any, mode: str, args: argparse.Namespace) -> StepContext:
    overrides = {
        "grpo_local.optim.prompts_per_step": args.prompts, "grpo_local.rollout.group_size": args.group,
        "grpo_local.rollout.max_new_tokens": args.max_new_tokens, "grpo_local.optim.grad_accum": 1,
        "grpo_local.soft.think_start_marker": "", "grpo_local.soft.max_think_tokens": args.max_new_tokens,
        "grpo_local.mode": mode,
    }
    cfg = load_config(overrides=overrides).grpo_local
    params = trainable_parameters(model)
    optimizer, scheduler = build_optimizer(params, cfg)
    # No stop ids: every answer runs to max_new_tokens, so both modes generate the same token count.
    stop = stop_spec(tokenizer, model, cfg.soft, args.max_new_tokens)
    stop = type(stop)(stop.pad_id, frozenset({-1}), stop.think_end_ids, stop.max_new_tokens, stop.think_start_ids)
    return StepContext(model, tokenizer, cfg, mode, stop, optimizer, scheduler, params, _reward)


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        _sync()
        best = min(best, time.perf_counter() - started)
    return best, result


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _bench_mode(model: Any, tokenizer: Any, rows: list[PromptRow], mode: str, args: argparse.Namespace) -> float:
    import torch

    ctx = _context(model, tokenizer, mode, args)
    prompts = [r.prompt_ids for r in rows for _ in range(args.group)]
    spec = sampling_spec(ctx.cfg, mode)
    gen = torch.Generator(device=args.device)
    rollout_s, batch = _best(lambda: generate(model, prompts, spec, ctx.stop, gen.manual_seed(0)), args.repeats)
    tokens = int(batch.mask.sum())
    steps_s, _ = _best(lambda: [run_step(ctx, rows, s) for s in range(args.steps)], args.repeats)
    per_step = steps_s / args.steps
    print(f"{mode}_rollout_tokens={tokens} {mode}_rollout_s={rollout_s:.2f} "
          f"{mode}_soft_step_frac={float(batch.soft.sum()) / max(tokens, 1):.2f}")
    print(f"{mode}_rollout_tokens_per_s={tokens / rollout_s:.0f} {mode}_steps_per_s={1 / per_step:.3f} "
          f"{mode}_step_s={per_step:.2f} {mode}_step_tokens_per_s={tokens / per_step:.0f}")
    return tokens / rollout_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="answers per prompt (n)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=0, help="random larger Llama width (0: tiny advisor)")
    parser.add_argument("--layers", type=int, default=0, help="random larger Llama depth (0: tiny advisor)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.group, args.max_new_tokens, args.steps, args.repeats = 2, 2, 4, 1, 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="grpo_bench_") as tmp:
        model_dir = ensure_tiny_advisor(Path(tmp), config)
        model, tokenizer = _model(model_dir, args)
        rows = [PromptRow(encode_prompt(tokenizer, build_messages(c, config)), "tradelab/NQ", "{}", {})
                for c in random_contexts(args.prompts, 11)]
        n_params = sum(p.numel() for p in model.parameters())
        print(f"device={args.device} torch_threads={torch.get_num_threads()} parameters={n_params} "
              f"prompts={args.prompts} group={args.group} max_new_tokens={args.max_new_tokens} "
              f"prompt_tokens_mean={sum(len(r.prompt_ids) for r in rows) / len(rows):.0f}")
        rates = {mode: _bench_mode(model, tokenizer, rows, mode, args) for mode in ("discrete", "soft")}
        print(f"soft_vs_discrete_rollout={rates['soft'] / rates['discrete']:.2f}")
        print(f"soft_tokens_per_s={rates['soft']:.0f}")


if __name__ == "__main__":
    main()
