"""Does the loop learn? The `loop` command on a market with a planted edge and on the null market, side by side.

For each market a fresh workspace gets the same seeded synthetic bars (``--edge`` for the known-answer market, 0 for
the null market), then ``loop`` runs ``--iterations`` iterations (Stage 1 -> Stage 2 dataset -> Stage 2 engine ->
evaluation) with ``--seeds`` evaluation seeds. It prints, for the edge market, the best simple rule's figures on the
same holdout prompts (the ceiling) next to the advisor's at warm start, after Stage 1 and after Stage 2 (Wilson
intervals); Stage 2's paired gain in mean holdout reward with a day-block interval, next to Stage 1's distance to the
ceiling; the hybrid's and PPO-only's net P&L with day-block intervals, and their difference; the records each
advisor learned from; and every comparison's minimum detectable effect (80% power, 5% two-sided) next to its
observed effect, with the goals of issue 25 for the edge (0.3: reward >= 70% of the rule's, balanced hit rate >=
0.57, hybrid - PPO-only above 0; 0.2: reward above the warm start's; 0.1: reported, with the prompts a test would
need). For the null market it checks that no agent's interval sits above 0 and that the advisor's balanced hit-rate
interval contains 0.5 (its plain hit rate is printed beside it: a constant answer's is the prompts' share of moves its
way). It also prints what the best simple rule earns per trade after costs, in R, at several strengths.

The headline, printed last: ``advisor_hit_rate_gain=<final minus warm start, edge market>``.

Every stage runs under the run profile ``--profile`` (default ``learn-tiny``, ``config/profiles/learn-tiny.yaml``:
the tiny advisor's learning recipe, 16,384 Stage 1 steps per iteration and an evaluation of 6 whole sessions per
seed), with ``--set KEY=VALUE`` laid over it; ``--timesteps``, ``--seeds``, ``--probe-prompts``, ``--eval-episodes``
and ``--eval-episode-bars`` replace the profile's values when given. ``--profile learn-smollm2`` runs SmolLM2;
``--profile pod`` the full-size stages (hours on a CPU). ``--smoke`` runs one short iteration on 20 sessions with a
small warm start and one GRPO step (the CI check that the bench still runs; its figures mean nothing).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tradelab import stages
from tradelab.config import TradelabConfig, config_hash, load_config, parse_assignments
from tradelab.loop import api as loop_api
from tradelab.loop.power import floor_text
from tradelab.loop.report import handed_on_text
from tradelab.errors import TradelabError
from tradelab.grpo.baselines import constant_answers_text
from tradelab.marketdata import load_market_arrays


SMOKE_OVERRIDES: dict[str, object] = {
    "llm.warm_start.n_examples": 32, "llm.warm_start.epochs": 1, "grpo_local.optim.steps": 1,
    "grpo_local.optim.prompts_per_step": 2, "grpo_local.rollout.group_size": 2, "stage1.refinement.hindsight_bars": 32,
}
"""What ``--smoke`` shrinks on top of the learning profile: the warm start and Stage 2's GRPO steps."""


def _handed_on(iteration: dict) -> str:
    """``, handed on step k of n (validation reward ...)`` when the engine recorded which step it handed on."""
    text = handed_on_text(iteration.get("stage2_run"))
    return f", handed on {text}" if text is not None else ""


def rule_r_per_trade(root: Path, edge: float, days: int, seed: int, prompts: int) -> tuple[float, list | None, float]:
    """Mean R per trade after costs, its day-block interval, and the hit rate of 'follow the 5-bar return'."""
    from tradelab.core.reward import compute_score
    from tradelab.evaluation.starts import Window
    from tradelab.loop.probe import build_probe_set, day_bootstrap_ci, momentum_rule_answers, score_answers

    config = load_config()
    stages.generate_data(root, "NQ", days=days, seed=seed, edge=edge, config=config)
    arrays = load_market_arrays(root, "NQ", config)
    holdout = Window(0, int(arrays.split_index), len(arrays))
    probe = build_probe_set(root, "NQ", config, arrays, holdout, n_prompts=prompts, seed=config.evaluation.base_seed)
    answers = momentum_rule_answers(probe)
    r = np.array([compute_score("tradelab/NQ", a, t)["outcome_r"] for a, t in zip(answers, probe.ground_truths)])
    interval = day_bootstrap_ci(r, probe.session_ids, seed=0)
    hit = score_answers(probe, answers)["hit_rate"]
    return float(r.mean()), [round(interval[0], 3), round(interval[1], 3)] if interval else None, float(hit)


def bench_config(args: argparse.Namespace) -> TradelabConfig:
    """The profile with the bench's flags and ``--set`` laid over it (flags left out keep the profile's values)."""
    flags = {"ppo.total_timesteps": args.timesteps, "evaluation.seeds": args.seeds,
             "evaluation.probe_prompts": args.probe_prompts, "evaluation.episodes": args.eval_episodes,
             "evaluation.episode_bars": args.eval_episode_bars}
    overrides = {**{k: v for k, v in flags.items() if v is not None}, **args.set,
                 **(SMOKE_OVERRIDES if args.smoke else {})}
    return load_config(profile=args.profile, overrides=overrides)


def holds_market(root: Path, edge: float, args: argparse.Namespace) -> bool:
    """Whether ``root`` already holds this bench's market: bars from the same generator, seed, sessions and edge."""
    from tradelab.marketdata.store import read_report
    from tradelab.marketdata.synth import GENERATOR_VERSION

    report = read_report(root, "NQ")
    source = report.get("source") if report is not None else None
    wanted = {"kind": "synthetic", "generator_version": GENERATOR_VERSION, "seed": args.data_seed, "days": args.days,
              "edge": edge}
    return isinstance(source, dict) and all(source.get(key) == value for key, value in wanted.items())


def run_market(root: Path, edge: float, args: argparse.Namespace, config: TradelabConfig) -> dict[str, Any]:
    """Generate the market (kept when ``root`` already holds it) and run or resume the loop; returns its report.

    A bench killed part-way is rerun with the same ``--root`` and flags: its bars are kept, and the loop resumes at
    the iteration and stage where it stopped (a different profile or flags make the loop refuse, with the reason).
    """
    if holds_market(root, edge, args):
        print(f"  edge={edge}: {root} already holds this market; the loop resumes there", flush=True)
    else:
        stages.generate_data(root, "NQ", days=args.days, seed=args.data_seed, edge=edge, config=config)
    started = time.perf_counter()

    def event(line: str) -> None:
        print(f"  [{time.perf_counter() - started:7.1f}s] edge={edge}: {line}", flush=True)

    result = loop_api.loop(root, "NQ", iterations=args.iterations, engine="local", config=config, on_event=event)
    print(f"  edge={edge}: loop finished in {time.perf_counter() - started:.0f}s; report {result['paths']['json']}",
          flush=True)
    return result["report"]


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"


def overlap(a: list | None, b: list | None) -> bool:
    return a is None or b is None or not (a[1] < b[0] or b[1] < a[0])


def met(flag: bool) -> str:
    return "met" if flag else "MISSED"


def print_power(report: dict[str, Any]) -> None:
    """Every comparison's MDE next to its observed effect, the records each iteration used, Stage 2's room."""
    from tradelab.loop.power import records_text, room_split_text

    power = report.get("power") or {}
    for used in power.get("records") or []:
        print(f"records it{used['iteration']}: {records_text(used)}")
    for room in power.get("stage2_room") or []:
        print(f"stage 1 distance to the rule's ceiling it{room['iteration']}: reward "
              f"{fmt(room['stage1_to_ceiling_reward'])} ({room_split_text(room)}); stage 2 "
              f"gain {fmt(room['observed'])} {fmt(room['ci'])}, MDE {fmt(room['mde'])}, room exceeds MDE: "
              f"{room['room_exceeds_mde']}")
    for row in power.get("comparisons") or []:
        seen = "" if row["met"] or row["could_have_seen"] is None else (
            f"; a miss the test {'could' if row['could_have_seen'] else 'could NOT'} have seen (room "
            f"{fmt(row['headroom'])})")
        unit = f" {row['unit']}" if row["unit"] else ""
        print(f"power: {row['name']}: observed {fmt(row['observed'])}{unit}, MDE {fmt(row['mde'])}{unit} "
              f"(80% power, 5% two-sided), goal {row['goal']}: {met(row['met'])}{seen}")


def prompts_for_power(rule_hit: float | None) -> int | None:
    """Holdout prompts (directional answers) a two-proportion test needs to see the rule's own hit-rate edge."""
    from tradelab.evaluation.power import mde_proportions

    if rule_hit is None or rule_hit <= 0.5:
        return None
    n = 16
    while n < 10_000_000 and (mde_proportions(0.5, n, n) or 1.0) > rule_hit - 0.5:
        n *= 2
    low, high = n // 2, n
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if (mde_proportions(0.5, mid, mid) or 1.0) > rule_hit - 0.5 else (low, mid)
    return high


def print_goals(report: dict[str, Any]) -> None:
    """Issue 25's goals for the report's edge, each met or missed."""
    from tradelab.loop.power import room_split_text

    edge = float(report["edge"] or 0.0)
    warm, final = report["warm_start"]["advisor"], report["iterations"][-1]["advisor"]
    rule = (report.get("power") or {}).get("rule_ceiling") or {}
    above = bool(final["holdout_reward_ci"] and warm["holdout_reward_ci"]
                 and final["holdout_reward_ci"][0] > warm["holdout_reward_ci"][1])
    if edge >= 0.3:
        share = (final["holdout_reward"] / rule["holdout_reward"]) if rule.get("holdout_reward") else None
        print(f"goal: final mean holdout reward >= 70% of the rule's ({fmt(share)} of "
              f"{fmt(rule.get('holdout_reward'))})"
              f" with its interval above the warm start's ({above}): {met(bool(share and share >= 0.7 and above))}")
        floor = (report.get("power") or {}).get("constant_floor")
        if floor and rule.get("holdout_reward"):
            action, best = max(floor.items(), key=lambda item: item[1]["holdout_reward"])
            apart = bool(final["holdout_reward_ci"] and best["holdout_reward_ci"]
                         and final["holdout_reward_ci"][0] > best["holdout_reward_ci"][1])
            print(f"  (a constant {action} scores {fmt(best['holdout_reward'])} {fmt(best['holdout_reward_ci'])} on "
                  f"these prompts, {fmt(best['holdout_reward'] / rule['holdout_reward'])} of the rule's; the "
                  f"advisor's interval above it: {apart})")
        balanced_apart = not overlap(final["balanced_hit_rate_ci"], warm["balanced_hit_rate_ci"])
        b = final["balanced_hit_rate"]
        print(f"goal: balanced hit rate >= 0.57 ({fmt(b)}) with intervals apart from the warm start's "
              f"({balanced_apart}): {met(bool(b is not None and b >= 0.57 and balanced_apart))}")
        if rule.get("balanced_hit_rate") is not None and rule["balanced_hit_rate"] < 0.57:
            print(f"  (the rule itself scores {fmt(rule['balanced_hit_rate'])} balanced on these prompts: the goal "
                  "is above the ceiling of this draw)")
        diff = report["iterations"][-1]["hybrid_minus_ppo"] or {}
        ci = diff.get("net_pnl_usd_ci")
        print(f"goal: hybrid - PPO-only lower bound > 0 ({fmt(ci)}): {met(bool(ci and ci[0] > 0))}")
    elif edge >= 0.2:
        print(f"goal: final mean holdout reward interval above the warm start's ({fmt(final['holdout_reward_ci'])} vs "
              f"{fmt(warm['holdout_reward_ci'])}): {met(above)}")
    elif edge > 0:
        need = prompts_for_power(rule.get("hit_rate"))
        print(f"edge {edge}: reported only; the rule's own hit rate {fmt(rule.get('hit_rate'))} is "
              f"{fmt((rule.get('hit_rate') or 0.5) - 0.5)} above a coin, which a two-proportion test sees at 80% "
              f"power with about {need} directional answers per side (this run: {warm['directional']} and "
              f"{final['directional']}); bench/records_needed.py prints the records the advisor needs")
    for room in (report.get("power") or {}).get("stage2_room") or []:
        ci = room["ci"]
        if room["room_exceeds_mde"]:
            print(f"goal: stage 2 it{room['iteration']} (Stage 1 below the ceiling by more than the MDE) gain lower "
                  f"bound > 0: {met(bool(ci and ci[0] > 0))} (the room: {room_split_text(room)})")
        elif room["room_exceeds_mde"] is None:
            print(f"goal: stage 2 it{room['iteration']}: no MDE (the paired gains have no spread), so whether Stage 1 "
                  f"left more than it is unknown; its distance to the ceiling is "
                  f"{fmt(room['stage1_to_ceiling_reward'])}")
        print(f"goal: stage 2 it{room['iteration']} gain upper bound not < 0: {met(not (ci and ci[1] < 0))}")


def print_edge(report: dict[str, Any]) -> float | None:
    warm = report["warm_start"]["advisor"]
    last = report["iterations"][-1]
    rule = (report.get("power") or {}).get("rule_ceiling")
    print("\n== edge market (edge %s)" % report["edge"])
    if rule:
        print(f"rule's ceiling (BUY if ret5 > 0 else SELL) {fmt(rule['hit_rate'])} {fmt(rule['hit_rate_ci'])} "
              f"balanced {fmt(rule['balanced_hit_rate'])} {fmt(rule['balanced_hit_rate_ci'])} reward "
              f"{fmt(rule['holdout_reward'])} {fmt(rule['holdout_reward_ci'])}")
    floor = (report.get("power") or {}).get("constant_floor")
    if floor:
        print(f"constant answers (no cue at all): {floor_text(floor, rule)}")
    print(f"advisor hit rate  warm start      {fmt(warm['hit_rate'])} {fmt(warm['hit_rate_ci'])} "
          f"up {fmt(warm['hit_rate_up'])} down {fmt(warm['hit_rate_down'])} balanced {fmt(warm['balanced_hit_rate'])} "
          f"{fmt(warm['balanced_hit_rate_ci'])} (directional answers {warm['directional']}, non-HOLD "
          f"{fmt(warm['non_hold_share'])})")
    for it in report["iterations"]:
        for label, key in (("after Stage 1", "advisor_stage1"), ("after Stage 2", "advisor")):
            a = it[key]
            print(f"advisor hit rate  it{it['iteration']} {label}  {fmt(a['hit_rate'])} {fmt(a['hit_rate_ci'])} "
                  f"up {fmt(a['hit_rate_up'])} down {fmt(a['hit_rate_down'])} balanced {fmt(a['balanced_hit_rate'])} "
                  f"{fmt(a['balanced_hit_rate_ci'])} reward {fmt(a['holdout_reward'])} "
                  f"{fmt(a['holdout_reward_ci'])} non-HOLD {fmt(a['non_hold_share'])} parse {fmt(a['parse_rate'])}")
    final = last["advisor"]
    gain = None if final["hit_rate"] is None or warm["hit_rate"] is None else final["hit_rate"] - warm["hit_rate"]
    if float(report["edge"] or 0.0) >= 0.5:  # the strong-edge goal of issue 12
        goal_hit = (final["hit_rate"] is not None and final["hit_rate"] >= 0.60 and gain is not None
                    and gain >= 0.08 and not overlap(final["hit_rate_ci"], warm["hit_rate_ci"]))
        print(f"goal: final hit rate >= 0.60 and >= warm + 0.08, intervals apart: {met(goal_hit)}")
    b_warm, b_final = warm["balanced_hit_rate"], final["balanced_hit_rate"]
    if b_warm is not None and b_final is not None:
        apart = not overlap(final["balanced_hit_rate_ci"], warm["balanced_hit_rate_ci"])
        print(f"balanced hit rate (a constant answer, or one that only picks when to SELL, scores 0.5): "
              f"warm {fmt(b_warm)} -> final {fmt(b_final)}, "
              f"gain {fmt(b_final - b_warm)}, intervals apart: {apart}")
    for it in report["iterations"]:
        for split, record in (it.get("dataset_constant_answers") or {}).items():
            print(f"stage 2 {split} split it{it['iteration']}: {constant_answers_text(record)}")
    for it in report["iterations"]:
        c = it["stage2_vs_stage1"] or {}
        above = bool(c.get("reward_gain_ci")) and c["reward_gain_ci"][0] > 0
        print(f"stage 2 gain in mean holdout reward it{it['iteration']}: {fmt(c.get('reward_gain'))} "
              f"{fmt(c.get('reward_gain_ci'))} (answers changed {fmt(c.get('answers_changed'))}, log-prob shift "
              f"{fmt(c.get('logprob_shift_mean'))}{_handed_on(it)}) goal (lower bound > 0): "
              f"{'met' if above else 'MISSED'}")
    for name in ("hybrid", "ppo", "advisor", "buy_and_hold", "random", "flat"):
        a = last["agents"].get(name)
        if a:
            met = bool(a["net_pnl_usd_ci"]) and a["net_pnl_usd_ci"][0] > 0
            goal = f" goal (lower bound > 0): {'met' if met else 'MISSED'}" if name in ("hybrid", "ppo") else ""
            print(f"net P&L {name:13s} {fmt(a['net_pnl_usd'])} USD days-CI {fmt(a['net_pnl_usd_ci'])} seeds-CI "
                  f"{fmt(a['net_pnl_usd_seed_ci'])} trades/day {fmt(a['trades_per_day'])} sharpe {fmt(a['sharpe'])}"
                  f"{goal}")
    diff = last["hybrid_minus_ppo"]
    if diff:
        print(f"hybrid minus PPO-only: {fmt(diff['net_pnl_usd'])} USD {fmt(diff['net_pnl_usd_ci'])}")
    for note in last["notes"]:
        print(f"note: {note}")
    print_power(report)
    print_goals(report)
    return gain


def print_null(report: dict[str, Any]) -> bool:
    """The null market's verdict: no agent's P&L interval above 0 and no advisor, at any measurement, that tells up
    from down.

    The advisor's test is its balanced hit rate, not its plain one: on prompts whose moves went up more often than
    down, a constant BUY's plain hit rate is that share and excludes 0.5 without any cue (or leak) at all, while its
    balanced rate is 0.5. The plain rate is printed beside it with a constant BUY's on the same prompts.
    """
    from tradelab.evaluation.power import mde_from_interval, mde_mean

    last = report["iterations"][-1]
    print("\n== null market (edge 0)")
    clean = True
    for name, a in last["agents"].items():
        leak = bool(a["net_pnl_usd_ci"]) and a["net_pnl_usd_ci"][0] > 0
        clean &= not leak
        print(f"net P&L {name:13s} {fmt(a['net_pnl_usd'])} USD days-CI {fmt(a['net_pnl_usd_ci'])} "
              f"{'LEAK? lower bound above 0' if leak else 'ok'} (MDE {fmt(mde_from_interval(a['net_pnl_usd_ci']))})")
    floor = (report.get("power") or {}).get("constant_floor") or {}
    buy_hit = (floor.get("BUY") or {}).get("hit_rate")
    measured = [("warm start", report["warm_start"]["advisor"])]
    for it in report["iterations"]:
        measured += [(f"it{it['iteration']} after Stage 1", it["advisor_stage1"]),
                     (f"it{it['iteration']} after Stage 2", it["advisor"])]
    for label, a in measured:
        if not a:
            continue
        ci = a["balanced_hit_rate_ci"]
        contains = ci is None or ci[0] <= 0.5 <= ci[1]
        clean &= contains
        print(f"advisor balanced hit rate {label}: {fmt(a['balanced_hit_rate'])} {fmt(ci)} "
              f"{'contains 0.5' if contains else 'LEAK?'} (hit rate {fmt(a['hit_rate'])} {fmt(a['hit_rate_ci'])}, a "
              f"constant BUY's {fmt(buy_hit)}; an edge over 0.5 below {fmt(mde_mean(0.5, a['directional']))} would "
              f"go unseen at {a['directional']} directional answers)")
    print(f"null market clean: {clean}")
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", type=float, default=0.3,
                        help="planted edge of the known-answer market (issue 25: 0.1, 0.2 or 0.3)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--profile", default="learn-tiny",
                        help="run profile every stage runs under (learn-tiny, learn-smollm2, smoke, pod, or a file's "
                             "stem under config/profiles/)")
    parser.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default: the profile's)")
    parser.add_argument("--probe-prompts", type=int, default=None, help="holdout prompts (default: the profile's)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="Stage 1 timesteps per iteration (default: the profile's; about 20 entry records per "
                             "1,000 steps, and every refinement adds stage1.refinement.hindsight_bars labelled flat "
                             "training bars)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="evaluation episodes per seed (default: the profile's)")
    parser.add_argument("--eval-episode-bars", type=int, default=None,
                        help="bars per evaluation episode (default: the profile's)")
    parser.add_argument("--root", default=None, help="keep the workspaces here (default: a temp folder)")
    parser.add_argument("--rule-edges", default="0.0,0.1,0.2,0.3,0.5,0.8",
                        help="strengths at which to print the best simple rule's R per trade ('' skips the table)")
    parser.add_argument("--skip-null", action="store_true", help="run the edge market only (no null market)")
    parser.add_argument("--skip-edge", action="store_true",
                        help="run the null market only (e.g. in a second process beside a --skip-null run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key on top of the profile (dotted, YAML value), e.g. "
                             "--set stage1.refinement.hindsight_bars=512")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.days, args.iterations, args.seeds, args.probe_prompts, args.timesteps = 20, 1, 1, 8, 256
        args.eval_episodes, args.eval_episode_bars = 1, 45
        args.rule_edges = str(args.edge)
    try:
        args.set = parse_assignments(args.set)
        config = bench_config(args)
    except TradelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="tradelab_learning_"))
    print(f"workspaces under {base}", flush=True)
    print(f"profile={config.profile} config_hash={config_hash(config)} timesteps={config.ppo.total_timesteps} "
          f"seeds={config.evaluation.seeds} probe_prompts={config.evaluation.probe_prompts} "
          f"base={config.llm.model}", flush=True)
    print("best simple rule (BUY if the 5-bar return is up, else SELL), holdout prompts, after costs:")
    for strength in [float(e) for e in args.rule_edges.split(",") if e.strip()]:
        r, ci, hit = rule_r_per_trade(base / f"rule_{strength}", strength, args.days, args.data_seed,
                                      config.evaluation.probe_prompts)
        print(f"  edge {strength:.1f}: {r:+.3f} R per trade {fmt(ci)}, direction hit rate {hit:.3f}", flush=True)
    if args.skip_edge and args.skip_null:
        print("error: --skip-edge and --skip-null leave nothing to run", file=sys.stderr)
        return 2
    try:
        edge_report = None if args.skip_edge else run_market(base / "edge", args.edge, args, config)
        null_report = None if args.skip_null else run_market(base / "null", 0.0, args, config)
    except TradelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (base / "learning_summary.json").write_text(json.dumps({"edge": edge_report, "null": null_report}, default=str))
    gain = None if edge_report is None else print_edge(edge_report)
    if null_report is not None:
        print_null(null_report)
    print(f"\nadvisor_hit_rate_gain={'nan' if gain is None else f'{gain:.4f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
