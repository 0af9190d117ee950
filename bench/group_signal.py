"""Do GRPO groups disagree where the advisor is wrong? The share of groups with a learning signal, by rollout
temperature and group size.

A GRPO group teaches only when its answers score differently. On labelled flat prompts of a market's training split
(Stage 2's entry decisions, :class:`tradelab.stage1.hindsight.HindsightBars`), the adapter's greedy answer is called
wrong when it is not the hindsight-best action. For each temperature the local engine's own sampler
(:func:`tradelab.grpo.local.rollout.generate`, discrete mode) draws the largest group size of answers per prompt, each
scored by the Stage 2 reward; smaller groups are the first answers of each. It prints, per temperature and group
size, the share of groups whose rewards differ on prompts the advisor gets wrong (``signal|wrong``) and on those it
gets right, the share of wrong prompts whose group holds at least one answer with the hindsight-best action
(``best|wrong``: only such a group can teach the right direction), the parse rate and the answers sampled per second;
the headline is ``best|wrong`` for the last adapter at the recipe's temperature and group size.

A zero-variance group costs its rollouts and teaches nothing; dynamic sampling (``grpo_local.dynamic_sampling``)
drops it and draws again, so the share on wrong prompts is what the defaults should make large.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tradelab import stages
from tradelab.config import load_config

MARKET = "NQ"


def main() -> int:
    import torch

    from tradelab.advisor.load import resolve_model_dir
    from tradelab.core.ground_truth import build_ground_truth, dumps
    from tradelab.core.parse import parse_advice
    from tradelab.core.reward import compute_score
    from tradelab.grpo.rows import with_reasoning
    from tradelab.grpo.local.data import encode_prompt
    from tradelab.grpo.local.groups import has_signal
    from tradelab.grpo.local.model import load_policy, stop_spec
    from tradelab.grpo.local.rollout import SamplingSpec, generate
    from tradelab.grpo.local.step import decode_answers
    from tradelab.marketdata import load_market_arrays
    from tradelab.stage1.hindsight import HindsightBars
    from tradelab.stage1.refine import score_actions
    from tradelab.stage1.wiring import initial_adapter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="a workspace with NQ bars (default: generate one)")
    parser.add_argument("--edge", type=float, default=0.3, help="planted edge when generating")
    parser.add_argument("--adapter", action="append", default=None,
                        help="adapter folder(s) to measure (default: the warm start); repeat for several")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--profile", default="learn-tiny", help="run profile whose engine settings are the defaults")
    parser.add_argument("--temperatures", default="0.5,0.7,1.0,1.3")
    parser.add_argument("--group-sizes", default="4,8,16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=120, help="sessions when generating")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.temperatures, args.group_sizes, args.days = 8, "0.5", "4,8", 30
    torch.set_num_threads(1)
    temperatures = [float(t) for t in args.temperatures.split(",")]
    sizes = sorted(int(n) for n in args.group_sizes.split(","))
    config = load_config(profile=args.profile)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="tradelab_groups_"))
    if not (root / "data" / MARKET).is_dir():
        stages.generate_data(root, MARKET, days=args.days, seed=7, edge=args.edge, config=config)
    arrays = load_market_arrays(root, MARKET, config)
    records = HindsightBars(root, MARKET, config, arrays, pool_bars=4 * args.prompts, seed=args.seed + 101).draw(
        args.prompts, round_=0)
    dataset = config.soft_grpo.dataset
    truths = [dumps(build_ground_truth(r, blocklist=dataset.blocklist, weights=dataset.reward_weights.model_dump()))
              for r in records]
    best = []
    for record in records:
        scores = score_actions(record)
        best.append(max(scores, key=lambda a: scores[a]))
    adapters = [Path(a) for a in args.adapter] if args.adapter else [
        initial_adapter(root, MARKET, config, seed=config.app.seed, resume=False)]
    base = resolve_model_dir(config.llm.model, root, config)
    local = config.grpo_local
    defaults = (local.rollout.temperature, local.rollout.group_size)
    print(f"{len(records)} labelled flat training prompts of {root}; engine defaults under profile {config.profile}: "
          f"temperature {defaults[0]}, group size {defaults[1]}, dynamic sampling {local.dynamic_sampling.enabled}",
          flush=True)
    headline = None
    for adapter in adapters:
        policy = load_policy(base, adapter, config, device="cpu")
        tok, model = policy.tokenizer, policy.model
        stop = stop_spec(tok, model, local.soft, local.rollout.max_new_tokens)
        prompt_ids = [encode_prompt(tok, with_reasoning(r["prompt"], dataset.reasoning_instruction, config.llm.prompts.system)) for r in records]
        greedy = decode_answers(tok, generate(model, prompt_ids, SamplingSpec(1.0, 0, 1.0, greedy=True), stop), stop)
        wrong = np.array([parse_advice(t).action != b for t, b in zip(greedy, best)])
        print(f"\nadapter {adapter}: greedy answer not the hindsight-best action on {int(wrong.sum())} of "
              f"{len(records)} prompts", flush=True)
        print(f"{'T':>5} {'n':>3} {'signal|wrong':>13} {'best|wrong':>12} {'signal|right':>13} {'zero-var':>9} "
              f"{'parse':>6} {'answers/s':>10}")
        for temperature in temperatures:
            spec = SamplingSpec(temperature, local.rollout.top_k, local.rollout.top_p)
            rows = [p for p in prompt_ids for _ in range(sizes[-1])]
            generator = torch.Generator().manual_seed(args.seed)
            started = time.perf_counter()
            texts: list[str] = []
            for start in range(0, len(rows), 256):
                batch = generate(model, rows[start:start + 256], spec, stop, generator)
                texts += decode_answers(tok, batch, stop)
            rate = len(texts) / (time.perf_counter() - started)
            results = [compute_score(f"tradelab/{MARKET}", t, truths[i // sizes[-1]]) for i, t in enumerate(texts)]
            rewards = np.array([r["score"] for r in results]).reshape(len(records), sizes[-1])
            parse = float(np.mean([r["format"] for r in results]))
            took_best = np.array([parse_advice(t).action == best[i // sizes[-1]] for i, t in enumerate(texts)]
                                 ).reshape(len(records), sizes[-1])
            for n in sizes:
                signal = has_signal(rewards[:, :n].reshape(-1), n)
                on_wrong = float(signal[wrong].mean()) if wrong.any() else float("nan")
                on_right = float(signal[~wrong].mean()) if (~wrong).any() else float("nan")
                best_found = float(took_best[wrong, :n].any(axis=1).mean()) if wrong.any() else float("nan")
                print(f"{temperature:>5.2f} {n:>3d} {on_wrong:>13.3f} {best_found:>12.3f} {on_right:>13.3f} "
                      f"{1 - signal.mean():>9.3f} {parse:>6.3f} {rate:>10.0f}", flush=True)
                if (temperature, n) == defaults:
                    headline = best_found
    print(f"\nbest_answer_in_group_on_wrong_prompts_at_defaults={'nan' if headline is None else f'{headline:.3f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
