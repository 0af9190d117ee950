"""Supervised adapter training throughput on CPU (examples/s, forward and backward) for a base model, and its levers.

Trains the LoRA adapter the warm start and Stage 1's refinements train (``llm.lora``), on teacher examples rendered
with the base's prompt template, one optimiser batch of ``llm.sft.batch_size`` examples at a time, in these modes:

* ``whole_batch``: the batch in one forward/backward pass, every prompt run whole (the figure before the levers);
* ``micro``: ``llm.sft.micro_batch_size`` examples per pass, gradients added up (same update up to rounding);
* ``micro_prefix``: as ``micro``, with the system turn every example starts with run once per pass
  (``llm.sft.shared_prefix``): the configured training; ``micro2_prefix`` and ``micro8_prefix`` with 2 and 8 examples
  per pass;
* ``micro_prefix_bf16``: as ``micro_prefix`` with the frozen base in bfloat16 under ``torch.autocast`` to bfloat16
  (``llm.sft.cpu_autocast``: other arithmetic), the configured training where the CPU multiplies bfloat16 natively.

The modes share one model and take turns batch by batch, so a machine that speeds up or slows down affects them
alike; each figure is the best of ``--rounds`` batches (the median beside it). Beside each rate the physical bound:
a training example's arithmetic (:mod:`tradelab.advisor.flops`: about two forwards, the shared prefix once per
pass) over this machine's measured float32 (or bfloat16) matmul rate. The loss of each mode on the same first batch
is printed to show the levers do not change it. Headline last: ``sft_examples_per_s`` (the configured mode).

Usage: ``python bench/advisor_sft_throughput.py [--model smollm2-135m-instruct] [--rounds 3] [--threads 1]
[--root DIR] [--smoke]``; ``--smoke`` times one round on the embedded tiny advisor (the CI check that the bench
still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODES: dict[str, dict[str, Any]] = {
    "whole_batch": {"micro": None, "prefix": False, "bf16": False},
    "micro": {"micro": "config", "prefix": False, "bf16": False},
    "micro_prefix": {"micro": "config", "prefix": True, "bf16": False},
    "micro2_prefix": {"micro": 2, "prefix": True, "bf16": False},
    "micro8_prefix": {"micro": 8, "prefix": True, "bf16": False},
    "micro_prefix_bf16": {"micro": "config", "prefix": True, "bf16": True},
}


def _bf16_gflops(rows: int, width: int, out_features: int, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(rows, width, dtype=torch.bfloat16), torch.randn(width, out_features, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * width * out_features / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base: named, .gguf or a folder")
    parser.add_argument("--rounds", type=int, default=3, help="timed batches per mode (the best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--root", type=Path, default=None, help="workspace root (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.rounds = "models/base/tiny-advisor", 1

    import torch

    from tradelab.advisor.flops import ModelArithmetic, matmul_gflops
    from tradelab.advisor.load import load_base_model, load_tokenizer, resolve_model_dir
    from tradelab.advisor.loss import response_loss, shared_prefix_length
    from tradelab.advisor.train import _peft_model, collate, encode_example, teacher_examples, training_autocast
    from tradelab.config import load_config

    torch.set_num_threads(args.threads)
    config = load_config(overrides={"llm.model": args.model, "llm.device": "cpu"})
    sft = config.llm.sft
    with tempfile.TemporaryDirectory(prefix="sft_bench_") as tmp:
        root = args.root or Path(tmp)
        base_dir = resolve_model_dir(config.llm.base_model, root, config)
        tokenizer = load_tokenizer(base_dir)
        models = {}
        for dtype in ("float32", "bfloat16"):
            base, _ = load_base_model(base_dir, config.llm.model_copy(update={"dtype": dtype}), "cpu")
            torch.manual_seed(0)
            models[dtype] = _peft_model(base, config, None)
            models[dtype].train()
        model = models["float32"]
        examples = teacher_examples(config, sft.batch_size * (args.rounds * len(MODES) + 1), 7)
        encoded = [encode_example(tokenizer, e, sft.max_seq_len) for e in examples]
        shape = ModelArithmetic.of(model)
        n = sft.batch_size

        def step(batch: list, mode: dict[str, Any]) -> float:
            micro = n if mode["micro"] is None else sft.micro_batch_size if mode["micro"] == "config" else mode["micro"]
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if mode["bf16"] else contextlib.nullcontext()
            model = models["bfloat16" if mode["bf16"] else "float32"]
            for p in model.parameters():
                p.grad = None
            total = 0.0
            for start in range(0, len(batch), micro):
                part = batch[start:start + micro]
                rows = collate(part, tokenizer.pad_token_id)
                prefix = shared_prefix_length(part) if mode["prefix"] else 0
                with autocast:
                    loss = response_loss(model, rows["input_ids"], rows["attention_mask"], rows["labels"],
                                         torch.ones(len(part)), sft.loss_chunk_tokens, prefix_tokens=prefix,
                                         batch_rows=len(batch))
                loss.backward()
                total += float(loss.detach())
            return total

        first = encoded[:n]
        print(f"model={base_dir} threads={torch.get_num_threads()} batch={n} micro_batch={sft.micro_batch_size} "
              f"lora_r={config.llm.lora.r} targets={config.llm.lora.target_modules}")
        losses = {name: step(first, mode) for name, mode in MODES.items()}  # also the warm-up
        print("first_batch_loss " + " ".join(f"{k}={v:.5f}" for k, v in losses.items()))
        seconds: dict[str, list[float]] = {name: [] for name in MODES}
        cursor = n
        for _ in range(args.rounds):
            for name, mode in MODES.items():
                batch = encoded[cursor:cursor + n]
                cursor += n
                started = time.perf_counter()
                step(batch, mode)
                seconds[name].append(time.perf_counter() - started)
        lengths = [len(ids) for ids, _ in encoded]
        prefix = shared_prefix_length(encoded[:sft.micro_batch_size])
        response = sum(sum(1 for lab in labs if lab != -100) for _, labs in encoded) / len(encoded)
        mean_len = sum(lengths) / len(lengths)
        whole = shape.training_flops(mean_len, 0, response)
        shared = shape.training_flops(mean_len - prefix, prefix, response) + shape.training_flops(
            prefix, 0, 0) / sft.micro_batch_size
        rows = round(sft.micro_batch_size * mean_len)
        fp32_rate = matmul_gflops(rows, shape.width, shape.intermediate) * 1e9
        bf16_rate = _bf16_gflops(rows, shape.width, shape.intermediate) * 1e9
        print(f"mean_tokens={mean_len:.1f} shared_prefix_tokens={prefix} response_tokens={response:.1f} "
              f"gflop_per_example={whole / 1e9:.1f} (with the shared prefix: {shared / 1e9:.1f}) "
              f"matmul_gflops fp32={fp32_rate / 1e9:.0f} bf16={bf16_rate / 1e9:.0f} ({rows} x {shape.width} rows)")
        rates = {}
        for name, mode in MODES.items():
            flops = shared if mode["prefix"] else whole
            bound = (bf16_rate if mode["bf16"] else fp32_rate) / flops
            best, median = n / min(seconds[name]), n / statistics.median(seconds[name])
            rates[name] = best
            print(f"{name}: examples_per_s={best:.2f} median={median:.2f} bound={bound:.2f} "
                  f"share_of_bound={best / bound:.2f}")
        print(f"micro_prefix_over_whole_batch={rates['micro_prefix'] / rates['whole_batch']:.2f} "
              f"bf16_over_fp32={rates['micro_prefix_bf16'] / rates['micro_prefix']:.2f}")
        configured = "micro_prefix_bf16" if isinstance(training_autocast(config, "cpu"), torch.autocast) else "micro_prefix"
        print(f"configured_mode={configured}")
        print(f"sft_examples_per_s={rates[configured]:.2f}")


if __name__ == "__main__":
    main()
