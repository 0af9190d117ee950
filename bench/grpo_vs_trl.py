"""Discrete GRPO, side by side: tradelab's local engine against TRL's ``GRPOTrainer``, on CPU, in one run.

Both train a fresh LoRA (r=8, alpha=16 on q/k/v/o) on the embedded tiny advisor with the same settings: prompts per
step, group size, answer length, steps, learning rate, sampling (temperature 1, top-p 0.95), one update per rollout
batch, KL weight ``beta`` to the adapter-free reference, clip epsilon 0.2 and the dual-clip bound (TRL's ``delta``).
The loss normalisation is the token mean over the batch in both (TRL's ``bnpo``; see
``tests/grpo_local/test_loss_vs_trl.py`` for how our loss maps onto TRL's ``grpo`` / ``dr_grpo``). Every answer runs to
``--max-new-tokens`` in both (our stop ids emptied; TRL's ``min_new_tokens``), so both generate the same number of
tokens and the per-step figures compare the same work.

The data is a real Stage 2 dataset: real experience records from the real env (``bench/export_scale.py``'s pool),
exported by :func:`tradelab.grpo.dataset.export_dataset`; our engine reads its rows with
:func:`tradelab.grpo.local.data.prepare_rows`, TRL gets the same rows as conversational prompts (it applies the same
chat template; the bench checks the token ids agree). The reward is :func:`tradelab.grpo.reward.compute_score` in
both.

Timing: each optimizer step (rollout, reward, reference and old scores, update) is timed; the first is a warm-up and
is left out. Printed per engine: ``<engine>_steps_per_s`` and ``<engine>_tokens_per_s`` (generated answer tokens
per second of step time); the headline last: ``local_over_trl=<ratio>`` of the tokens/s.

Usage: ``python bench/grpo_vs_trl.py [--prompts 4] [--group 8] [--max-new-tokens 32] [--steps 4] [--threads 1]
[--smoke]``; ``--smoke`` runs 2 steps of 2 prompts x 2 answers x 4 tokens (the CI check that the bench still runs;
its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MARKET = "NQ"
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def build_dataset(root: Path, config: Any, rows: int) -> Path:
    """A Stage 2 dataset in ``root`` from real experience records; returns the train parquet."""
    from export_scale import build_pool  # a sibling script: bench/ is this script's own folder

    from tradelab.grpo.dataset import export_dataset
    from tradelab.fileio import append_jsonl
    from tradelab.paths import Workspace

    pool = build_pool(root, config, n_records=rows, seed=5)
    append_jsonl(Workspace.at(root).experience_path(MARKET), pool)
    meta = export_dataset(root, MARKET, config)
    return Path(meta["paths"]["train"])


def _lora_model(model_dir: Path) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    return get_peft_model(base, LoraConfig(**LORA)).eval()


def run_local(model_dir: Path, train_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Our engine's :func:`run_step`, ``--steps`` times; per-step seconds and answer tokens."""
    from transformers import AutoTokenizer

    from tradelab.config import load_config
    from tradelab.grpo.local.data import PromptGuard, prepare_rows
    from tradelab.grpo.local.model import stop_spec, trainable_parameters
    from tradelab.grpo.local.rollout import default_reward
    from tradelab.grpo.local.step import StepContext, run_step
    from tradelab.grpo.local.train import build_optimizer

    overrides = {
        "grpo_local.mode": "discrete", "grpo_local.optim.prompts_per_step": args.prompts,
        "grpo_local.rollout.group_size": args.group, "grpo_local.rollout.max_new_tokens": args.max_new_tokens,
        "grpo_local.rollout.temperature": 1.0, "grpo_local.rollout.top_p": 0.95, "grpo_local.rollout.top_k": 0,
        "grpo_local.optim.grad_accum": 1, "grpo_local.optim.ppo_epochs": 1, "grpo_local.optim.lr": args.lr,
        "grpo_local.optim.warmup_steps": 0, "grpo_local.optim.kl_coef": args.beta,
        "grpo_local.optim.clip_eps": 0.2, "grpo_local.optim.dual_clip": 3.0,
    }
    cfg = load_config(overrides=overrides).grpo_local
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = _lora_model(model_dir)
    rows = prepare_rows(train_path, tokenizer, PromptGuard(cfg.rollout.max_prompt_tokens, "truncate"))
    params = trainable_parameters(model)
    optimizer, scheduler = build_optimizer(params, cfg)
    stop = stop_spec(tokenizer, model, cfg.soft, args.max_new_tokens)
    stop = type(stop)(stop.pad_id, frozenset({-1}), stop.think_end_ids, stop.max_new_tokens, stop.think_start_ids)
    ctx = StepContext(model, tokenizer, cfg, "discrete", stop, optimizer, scheduler, params, default_reward())
    steps = []
    for step in range(args.steps):
        started = time.perf_counter()
        out = run_step(ctx, rows, step)
        steps.append({"s": time.perf_counter() - started, "tokens": out["answer_tokens"],
                      "reward": out["reward_mean"], "timings": out["timings"]})
    return {"steps": steps, "prompt_ids": [r.prompt_ids for r in rows]}


def run_trl(model_dir: Path, train_path: Path, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """TRL's ``GRPOTrainer`` on the same rows and settings; per-step seconds (a callback) and answer tokens."""
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from tradelab.grpo.reward import compute_score

    table = pq.read_table(train_path).to_pylist()
    data = Dataset.from_list([{"prompt": [dict(m) for m in r["prompt"]], "data_source": r["data_source"],
                               "ground_truth": r["reward_model"]["ground_truth"]} for r in table])

    def reward(prompts: list[Any], completions: list[Any], ground_truth: list[str], data_source: list[str],
               **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(compute_score(ds, text, gt)["score"])
                for ds, text, gt in zip(data_source, texts, ground_truth, strict=True)]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    batch = args.prompts * args.group
    config = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, fp16=False, seed=0, data_seed=0,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=args.group,
        num_iterations=1, max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, adam_beta1=0.9, adam_beta2=0.999,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=0.95, top_k=0,
        generation_kwargs={"min_new_tokens": args.max_new_tokens},
        beta=args.beta, epsilon=0.2, delta=3.0, loss_type="bnpo", scale_rewards="group",
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    timer = StepTimer()
    trainer = GRPOTrainer(model=base, reward_funcs=reward, args=config, train_dataset=data,
                          processing_class=tokenizer, peft_config=LoraConfig(**LORA), callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the bench prints its own summary
    trainer.train()
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    steps = [{"s": s, "tokens": round(h["completions/mean_length"] * batch), "reward": h.get("reward", float("nan"))}
             for s, h in zip(timer.seconds, logs, strict=False)]
    prompt_ids = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"] for r in data]
    return {"steps": steps, "prompt_ids": prompt_ids}


def _rates(steps: list[dict[str, Any]]) -> dict[str, float]:
    timed = steps[1:] if len(steps) > 1 else steps
    seconds = sum(s["s"] for s in timed)
    tokens = sum(s["tokens"] for s in timed)
    return {"steps_per_s": len(timed) / seconds, "tokens_per_s": tokens / seconds, "step_s": seconds / len(timed),
            "tokens_per_step": tokens / len(timed), "step_s_median": statistics.median(s["s"] for s in timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="answers per prompt (n, TRL's num_generations)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per engine (the first is a warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both engines")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.001, help="KL weight (our kl_coef, TRL's beta)")
    parser.add_argument("--rows", type=int, default=48, help="experience records behind the dataset")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.group, args.max_new_tokens, args.steps = 2, 2, 4, 2
    import torch
    import transformers
    import trl

    from tradelab.advisor.tiny import ensure_tiny_advisor
    from tradelab.config import load_config

    logging.disable(logging.WARNING)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_") as tmp:
        root = Path(tmp)
        train_path = build_dataset(root, config, args.rows)
        model_dir = ensure_tiny_advisor(root, config)
        local = run_local(model_dir, train_path, args)
        trl_run = run_trl(model_dir, train_path, args, root / "trl_out")
    same_prompts = local["prompt_ids"] == trl_run["prompt_ids"]
    rates = {"local": _rates(local["steps"]), "trl": _rates(trl_run["steps"])}
    print(f"torch={torch.__version__} transformers={transformers.__version__} trl={trl.__version__} "
          f"torch_threads={torch.get_num_threads()} device=cpu")
    print(f"prompts_per_step={args.prompts} group={args.group} batch={args.prompts * args.group} "
          f"max_new_tokens={args.max_new_tokens} steps={args.steps} (first left out) beta={args.beta} lr={args.lr} "
          f"train_rows={len(local['prompt_ids'])} same_prompt_ids={same_prompts}")
    for name, run in (("local", local), ("trl", trl_run)):
        per_step = ", ".join(f"{s['s']:.2f}s/{s['tokens']}tok/r{s['reward']:+.2f}" for s in run["steps"])
        print(f"{name}_steps: {per_step}")
    if local["steps"] and "timings" in local["steps"][-1]:
        print("local_last_step_timings: " + json.dumps({k: round(v, 3) for k, v in
                                                        local["steps"][-1]["timings"].items()}))
    for name, r in rates.items():
        print(f"{name}_steps_per_s={r['steps_per_s']:.3f} {name}_tokens_per_s={r['tokens_per_s']:.0f} "
              f"{name}_step_s={r['step_s']:.2f} {name}_step_s_median={r['step_s_median']:.2f} "
              f"{name}_tokens_per_step={r['tokens_per_step']:.0f}")
    print(f"local_over_trl_steps={rates['local']['steps_per_s'] / rates['trl']['steps_per_s']:.2f}")
    print(f"local_over_trl={rates['local']['tokens_per_s'] / rates['trl']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
