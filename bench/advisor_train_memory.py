"""Peak memory of supervised adapter training: response-only chunked loss vs full-vocabulary logits everywhere.

Builds a real-architecture test model (default ``qwen2``: Qwen's real 151,936-id vocabulary, random weights; see
:mod:`testmodels.families`) or takes ``--model PATH``, and trains a fresh LoRA adapter on ``--examples``
teacher answers at ``llm.sft.batch_size`` (16) for one epoch, twice, each in its own process so one peak cannot
hide the other:

- ``full_logits``: the loss as computed before: the model's forward over every position, float32 logits of the
  whole vocabulary at each of them, masked cross-entropy;
- ``response_chunked``: :func:`tradelab.advisor.train.response_loss`, what training uses now.

Peak memory is :class:`tradelab.advisor.memory.PeakMemory` over the training loop (the process's sampled resident
set on CPU, CUDA's allocator peak on a GPU). The headline, printed last, is ``peak_memory_ratio`` = full / chunked.

Usage: ``python bench/advisor_train_memory.py [--family qwen2 | --model PATH] [--examples 64] [--threads N]
[--smoke]``; ``--smoke`` trains the embedded tiny advisor on 4 examples (the CI check that the bench still runs; its
figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testmodels.families import FAMILIES


def _full_logits_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any, weights: Any,
                      chunk_tokens: int, *, prefix_tokens: int = 0, batch_rows: int | None = None) -> Any:
    """The earlier loss: logits at every position (prompt included, no shared prefix), then the masked weighted
    cross-entropy, scaled like :func:`tradelab.advisor.loss.response_loss` when a batch is split into micro-batches."""
    from tradelab.advisor.loss import weighted_loss

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    loss = weighted_loss(logits, labels, weights)
    return loss if batch_rows is None else loss * (len(input_ids) / batch_rows)


def _train(model: str, mode: str, examples: int, threads: int, out: str) -> None:
    """Child process: one training run; prints its summary as JSON on the last line."""
    import torch

    from tradelab.advisor import train
    from tradelab.config import load_config

    if threads:
        torch.set_num_threads(threads)
    if mode == "full_logits":
        train.response_loss = _full_logits_loss
    config = load_config(overrides={"llm.model": model, "llm.device": "auto"})
    started = time.perf_counter()
    adapter = train.train_adapter(model, train.teacher_examples(config, examples, 0), config, out_dir=out, seed=0,
                                  epochs=1)
    summary = train.read_training_summary(adapter)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--family", choices=FAMILIES, default="qwen2", help="test model to build (default qwen2)")
    source.add_argument("--model", type=Path, default=None, help="base model directory instead of a family build")
    parser.add_argument("--examples", type=int, default=64, help="teacher examples (one epoch)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.child:
        _train(args.child[0], args.child[1], args.examples, args.threads, args.out)
        return
    from testmodels.families import build_family_model
    from tradelab.config import load_config

    with tempfile.TemporaryDirectory(prefix="train_memory_bench_") as tmp:
        if args.model is not None:
            model = args.model.resolve()
        elif args.smoke:
            from tradelab.advisor.tiny import ensure_tiny_advisor

            model, args.examples = ensure_tiny_advisor(Path(tmp), load_config()), 4
        else:
            model = build_family_model(args.family, Path(tmp) / args.family, load_config())
        sft = load_config().llm.sft
        print(f"model={model} examples={args.examples} batch_size={sft.batch_size} "
              f"loss_chunk_tokens={sft.loss_chunk_tokens}")
        peaks = {}
        for mode in ("full_logits", "response_chunked"):
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(model), mode, "--examples", str(args.examples),
                 "--threads", str(args.threads), "--out", str(Path(tmp) / f"adapter_{mode}")],
                capture_output=True, text=True, check=False,
            )
            if child.returncode:
                raise SystemExit(f"the {mode} child failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
            summary = json.loads(child.stdout.strip().splitlines()[-1])
            peaks[mode] = summary["peak_memory_mb"]
            print(f"{mode}_peak_memory_mb={summary['peak_memory_mb']} ({summary['peak_memory_kind']}) "
                  f"steps={summary['steps']} loss={summary['epoch_loss'][-1]:.4f} wall_s={summary['wall_s']}")
        print(f"peak_memory_ratio={peaks['full_logits'] / peaks['response_chunked']:.2f}")


if __name__ == "__main__":
    main()
