"""How many labelled entry records does an advisor need to learn the cue, at edges a market could have?

For each edge a fresh workspace gets the same seeded synthetic bars as ``bench/learning.py``. The warm-started
adapter is trained on N labelled flat prompts of the training split (:class:`tradelab.stage1.hindsight.HindsightBars`:
prompts from the bars up to each decision, hindsight labels from the bars after it, never past the training split),
the way a Stage 1 refinement trains under ``--profile`` (default learn-tiny: entries, uniform weights), and then
answers the loop's holdout prompts. It prints, per edge, the best simple rule's figures on those prompts (the
ceiling), the warm start's, and per N the advisor's hit rate, balanced hit rate and mean reward with intervals, its
share of the rule's reward and the minimum detectable effect (80% power, 5% two-sided) of its hit rate against the
warm start's, and for each adapter how its BUY-minus-SELL log-prob margin follows the sign of the 5-bar return (its
AUC, offset and spread: an adapter can rank the prompts by the cue while a learned drift keeps one side winning every
greedy answer). It also prints the entry records a Stage 1 run yields per 1,000 steps, from the experience files of a
measured run when given.

The headline, printed last: ``records_needed_edge_<E>=<smallest N whose mean reward is >= 70% of the rule's with an
interval above the warm start's>`` for the highest edge (``nan`` when no N reached it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tradelab import stages
from tradelab.config import load_config, parse_assignments
from tradelab.errors import TradelabError

MARKET = "NQ"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.3f}"


def _line(label: str, a: dict[str, Any]) -> str:
    return (f"{label:>18}: hit {_fmt(a['hit_rate'])} {_fmt(a['hit_rate_ci'])} balanced {_fmt(a['balanced_hit_rate'])} "
            f"reward {_fmt(a['holdout_reward'])} {_fmt(a['holdout_reward_ci'])} non-HOLD {_fmt(a['non_hold_share'])}")


def _margin_line(advisor: Any, probe: Any) -> str:
    """How the advisor's BUY-minus-SELL log-prob margin follows the sign of the 5-bar return (the planted cue)."""
    import numpy as np

    from tradelab.evaluation.stats import rank_auc
    from tradelab.loop.probe import side_margins

    margins = side_margins(advisor, probe)
    up = np.array([context["return_5_bars"] > 0 for context in probe.contexts])
    return (f"{'':>18}  BUY-SELL margin: AUC vs the 5-bar return's sign {_fmt(rank_auc(margins, up))}, offset "
            f"{margins.mean():+.3f}, sd {margins.std():.3f} (ret5 up {margins[up].mean():+.3f}, down "
            f"{margins[~up].mean():+.3f})")


def run_edge(base: Path, edge: float, args: argparse.Namespace) -> int | None:
    """Train and probe every N at one edge; returns the smallest N that reached the goal (None: none did)."""
    from tradelab.advisor.generate import Advisor
    from tradelab.advisor.load import resolve_model_dir
    from tradelab.evaluation.starts import Window
    from tradelab.evaluation.power import mde_proportions
    from tradelab.loop.power import rule_ceiling
    from tradelab.loop.probe import build_probe_set, score_answers
    from tradelab.marketdata import load_market_arrays
    from tradelab.stage1.hindsight import HindsightBars
    from tradelab.stage1.refine import refine_adapter
    from tradelab.stage1.wiring import initial_adapter

    root = base / f"edge_{edge}"
    weights = {"stage1.refinement.weights": args.weights} if args.weights else {}
    config = load_config(profile=args.profile,
                         overrides={"stage1.refinement.epochs": args.epochs, **weights, **args.set})
    stages.generate_data(root, MARKET, days=args.days, seed=args.data_seed, edge=edge, config=config)
    arrays = load_market_arrays(root, MARKET, config)
    holdout = Window(0, int(arrays.split_index), len(arrays))
    level, seed = config.evaluation.ci_level, config.evaluation.base_seed
    probe = build_probe_set(root, MARKET, config, arrays, holdout, n_prompts=args.probe_prompts, seed=seed)
    rule = rule_ceiling(probe, level=level, seed=seed)
    warm_dir = initial_adapter(root, MARKET, config, seed=config.app.seed, resume=False)
    advisor = Advisor(config, root, adapter_path=warm_dir)
    warm = score_answers(probe, advisor.generate_texts(probe.messages, seed=config.app.seed), level=level, seed=seed)
    print(f"\n== edge {edge}: {len(probe)} holdout prompts", flush=True)
    print(f"{'rule (ceiling)':>18}: hit {_fmt(rule['hit_rate'])} {_fmt(rule['hit_rate_ci'])} balanced "
          f"{_fmt(rule['balanced_hit_rate'])} reward {_fmt(rule['holdout_reward'])} {_fmt(rule['holdout_reward_ci'])}")
    print(_line("warm start", warm), flush=True)
    print(_margin_line(advisor, probe), flush=True)
    started = time.perf_counter()
    pool = HindsightBars(root, MARKET, config, arrays, pool_bars=2 * max(args.sizes), seed=config.app.seed)
    print(f"{'':>18}  pool of {len(pool)} labelled flat training bars in {time.perf_counter() - started:.1f}s")
    base_dir = resolve_model_dir(config.llm.model, root, config)
    needed = None
    for n in args.sizes:
        started = time.perf_counter()
        summary = refine_adapter(pool.draw(n, round_=0), config, base_dir=base_dir, init_adapter=warm_dir,
                                 out_dir=root / f"adapter_{n}", seed=config.app.seed, epochs=args.epochs)
        trained_s = time.perf_counter() - started
        advisor.set_adapter(root / f"adapter_{n}")
        got = score_answers(probe, advisor.generate_texts(probe.messages, seed=config.app.seed), level=level,
                            seed=seed)
        share = got["holdout_reward"] / rule["holdout_reward"] if rule["holdout_reward"] else None
        above = bool(got["holdout_reward_ci"] and warm["holdout_reward_ci"]
                     and got["holdout_reward_ci"][0] > warm["holdout_reward_ci"][1])
        reached = share is not None and share >= 0.7 and above
        if reached and needed is None:
            needed = n
        mde = mde_proportions(warm["hit_rate"], warm["directional"], got["directional"]) if warm["hit_rate"] else None
        print(_line(f"N={n}", got) + f" | {share:.0%} of the rule's reward, interval above warm: {above}; hit-rate "
              f"MDE vs warm {_fmt(mde)}; {summary['examples']} examples x {args.epochs} passes in {trained_s:.0f}s"
              + (" <- reached" if reached else ""), flush=True)
        print(_margin_line(advisor, probe), flush=True)
    gap = rule["hit_rate"] - 0.5 if rule["hit_rate"] is not None else None
    n_dir = rule["directional"]
    print(f"{'':>18}  rule's hit-rate edge over a coin {_fmt(gap)}; MDE of a hit rate against 0.5 at "
          f"{n_dir} directional answers: {_fmt(mde_proportions(0.5, n_dir, n_dir))}")
    return needed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", default="0.1,0.2,0.3", help="comma-separated planted edges")
    parser.add_argument("--sizes", default="256,1024,4096", help="comma-separated labelled records N")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the N records")
    parser.add_argument("--weights", default=None, choices=("uniform", "advantage", "sides"),
                        help="stage1.refinement.weights (default: the recipe's)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--profile", default="learn-tiny", help="run profile whose refinement trains the adapter")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--probe-prompts", type=int, default=480)
    parser.add_argument("--root", default=None, help="keep the workspaces here (default: a temp folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key on top of the profile (dotted, YAML value), e.g. "
                             "--set llm.sft.learning_rate=1e-3")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    try:
        args.set = parse_assignments(args.set)
        checked = load_config(profile=args.profile, overrides=args.set)
    except TradelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.smoke:
        args.edges, args.sizes, args.epochs, args.days, args.probe_prompts = "0.3", "16", 1, 30, 32
    args.sizes = [int(s) for s in args.sizes.split(",")]
    edges = [float(e) for e in args.edges.split(",")]
    base = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="tradelab_records_"))
    print(f"workspaces under {base}; profile {args.profile}, {args.epochs} passes, weights "
          f"{args.weights or checked.stage1.refinement.weights}, overrides {args.set}",
          flush=True)
    needed = {edge: run_edge(base, edge, args) for edge in edges}
    print()
    for edge, n in needed.items():
        print(f"records needed at edge {edge}: {n if n is not None else f'more than {max(args.sizes)}'}")
    top = max(edges)
    print(f"records_needed_edge_{top}={needed[top] if needed[top] is not None else 'nan'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
