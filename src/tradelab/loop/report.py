"""The loop report: ``loop_report.json`` (a stable shape other tools read), ``loop_report.md`` and one PNG.

JSON shape (every ``*_ci`` is ``[low, high]`` or null when the sample is too small)::

    {"market", "edge", "market_origin", "seeds", "settings", "status",
     "warm_start": {"advisor": ADVISOR},
     "iterations": [{"iteration", "stages", "redone": [STOP], "adapter_in_sha256", "adapter_stage1_sha256",
                     "adapter_out_sha256", "dataset_sha256s", "advisor_stage1": ADVISOR, "advisor": ADVISOR,
                     "stage2_vs_stage1", "agents": {"hybrid": AGENT, "ppo": AGENT, ...}, "hybrid_minus_ppo",
                     "notes": [...]}],
     "interruptions": [{"iteration", **STOP}],
     "headline": {"advisor_hit_rate_gain", ...},
     "power": {"rule_ceiling", "constant_floor",
               "comparisons": [{name, observed, ci, mde, goal, met, headroom, could_have_seen}],
               "stage2_room": [{iteration, stage1_to_ceiling_reward, stage1_to_ceiling_sides_reward,
                               observed (Stage 2's gain), mde, ...}]}}

    ADVISOR = {hit_rate, hit_rate_ci, hit_rate_up, hit_rate_down, balanced_hit_rate, balanced_hit_rate_ci,
               holdout_reward, holdout_reward_ci, sides_reward (the same sides at neutral confidence), parse_rate,
               non_hold_share, prompts, directional, ...}
    STOP    = {stage, status (interrupted | failed), redo (afresh | continued from ... | rewritten), found_at, error}
    AGENT   = {net_pnl_usd, net_pnl_usd_ci (day-block bootstrap), net_pnl_usd_seed_ci (t over >= 3 seeds),
               trades_per_day, sharpe (annualised, all seeds' days pooled), days, trades, seeds}

``advisor`` is the adapter an iteration hands on (after Stage 2); ``advisor_stage1`` the one Stage 1 refined.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.evaluation.stats import block_bootstrap_ci, seed_t_ci
from tradelab.fileio import atomic_path, writing
from tradelab.grpo.baselines import constant_answers_text
from tradelab.loop.power import power_lines, power_section
from tradelab.provenance import SCHEMA_VERSION, origin

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.manifest_schema import LoopInterruption, LoopIteration, LoopSection

ADVISOR_KEYS: tuple[str, ...] = (
    "hit_rate", "hit_rate_ci", "hit_rate_up", "hit_rate_up_ci", "hit_rate_down", "hit_rate_down_ci",
    "balanced_hit_rate", "balanced_hit_rate_ci", "holdout_reward",
    "holdout_reward_ci", "sides_reward", "parse_rate", "parse_rate_ci", "non_hold_share", "non_hold_share_ci", "prompts",
    "directional", "adapter_sha256", "answers_path",
)
"""Advisor figures kept in the report."""

CENT = 0.005
"""Two P&L figures closer than half a cent are reported as identical."""


def agents_from_report(path: Path, *, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Per-agent loop figures from one evaluation ``report.json``.

    Args:
        path: The evaluation's ``report.json`` (it carries each agent's per-seed metrics and daily P&L).
        level: Interval level.
        seed: Bootstrap seed.

    Returns:
        ``{"agents": {name: AGENT}, "hybrid_minus_ppo": {...} | None, "identical": [[a, b], ...]}``.
    """
    report = json.loads(path.read_text(encoding="utf-8"))
    daily_all: dict[str, dict[str, list[float]]] = report["daily_pnl_usd"]
    agents: dict[str, Any] = {}
    for name, entry in report["agents"].items():
        per_seed = entry["per_seed"]
        n_seeds = len(per_seed)
        net = [float(s["net_pnl_usd"]) for s in per_seed if s.get("net_pnl_usd") is not None]
        days = sum(int(s.get("days") or 0) for s in per_seed)
        trades = sum(int(s.get("trades") or 0) for s in per_seed)
        daily = _concat(daily_all.get(name) or daily_all.get(report["settings"]["aliases"].get(name, ""), {}))
        agents[name] = {
            "net_pnl_usd": float(np.mean(net)) if net else None,
            "net_pnl_usd_ci": _seed_mean_sum_ci(daily, n_seeds, level, seed),
            "net_pnl_usd_seed_ci": _pair(seed_t_ci(net, level=level)),
            "trades_per_day": trades / days if days else None,
            "sharpe": _pooled_sharpe(report, name),
            "days": days, "trades": trades, "seeds": n_seeds,
            "per_seed_net_pnl_usd": net,
        }
    difference = None
    if "hybrid" in agents and "ppo" in agents:
        hybrid, ppo = _concat(daily_all.get("hybrid", {})), _concat(daily_all.get("ppo", {}))
        if len(hybrid) == len(ppo) and hybrid:
            diff = [a - b for a, b in zip(hybrid, ppo)]
            n_seeds = agents["hybrid"]["seeds"]
            difference = {"net_pnl_usd": sum(diff) / n_seeds,
                          "net_pnl_usd_ci": _seed_mean_sum_ci(diff, n_seeds, level, seed)}
    names = list(agents)
    identical = [[a, b] for i, a in enumerate(names) for b in names[i + 1:]
                 if _same_to_the_cent(agents[a], agents[b]) and agents[a]["trades"] > 0]
    return {"agents": agents, "hybrid_minus_ppo": difference, "identical": identical,
            "base_model": report.get("base_model")}


def _pooled_sharpe(report: dict[str, Any], name: str) -> float | None:
    """The evaluation's annualised Sharpe of every seed's days pooled into one sample.

    Not the mean of per-seed Sharpes: a test-mode evaluation has two days per seed, and the ratio of two days is noise
    that one seed with a near-zero spread can push to any size or sign (a hybrid with +11,689 USD averaged -64).
    """
    intervals = report["intervals"]
    key = name if name in intervals else report["settings"]["aliases"][name]
    return intervals[key]["rows"]["sharpe_pooled"]["value"]


def _concat(by_seed: dict[str, list[float]]) -> list[float]:
    return [float(v) for key in sorted(by_seed, key=int) for v in by_seed[key]]


def _seed_mean_sum_ci(daily: list[float], n_seeds: int, level: float, seed: int) -> list[float] | None:
    """Interval of the per-seed net P&L: a block bootstrap of the summed days, divided by the seed count."""
    if not daily or n_seeds < 1:
        return None
    interval = block_bootstrap_ci(daily, statistic="sum", level=level, seed=seed)
    return [interval[0] / n_seeds, interval[1] / n_seeds] if interval else None


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return [float(interval[0]), float(interval[1])] if interval is not None else None


def _same_to_the_cent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    x, y = a["per_seed_net_pnl_usd"], b["per_seed_net_pnl_usd"]
    return len(x) == len(y) and bool(x) and all(abs(p - q) < CENT for p, q in zip(x, y))


def _advisor(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: figures.get(k) for k in ADVISOR_KEYS} if figures else None


def _notes(it: LoopIteration) -> list[str]:
    """What a reader should not miss about an iteration: identical agents, a Stage 2 that changed nothing."""
    notes = [f"{a} and {b} have identical net P&L to the cent on every seed"
             for a, b in (it.evaluation.identical if it.evaluation else [])]
    comparison = it.stage2_vs_stage1
    if comparison and comparison["same_adapter"]:
        notes.append("Stage 2 returned the Stage 1 adapter's weights unchanged (same adapter_model.safetensors sha256)")
    elif comparison and comparison["answers_changed"] == 0.0:
        notes.append(f"Stage 2's weights differ from Stage 1's (log-prob shift "
                     f"{comparison['logprob_shift_mean']:.4g}) but give the same greedy answers on every "
                     "holdout prompt")
    return notes


def _stop(stop: LoopInterruption) -> dict[str, Any]:
    return {"stage": stop.stage, "status": stop.status, "redo": stop.redo, "found_at": stop.found_at,
            "error": stop.error}


def _iteration(it: LoopIteration, stops: list[LoopInterruption]) -> dict[str, Any]:
    evaluation = it.evaluation
    return {
        "iteration": it.iteration, "stages": dict(it.stages),
        "redone": [_stop(s) for s in stops if s.iteration == it.iteration and s.stage in it.stages],
        "base_in_sha256": it.base_in_sha256, "adapter_in_sha256": it.adapter_in_sha256,
        "adapter_stage1_sha256": it.adapter_stage1_sha256, "base_out_sha256": it.base_out_sha256,
        "adapter_out_sha256": it.adapter_out_sha256, "ppo_init": it.ppo_init, "dataset_sha256s": it.dataset_sha256s,
        "stage2_run": it.stage2_run.record() if it.stage2_run else None,
        "stage1": it.stage1.record() if it.stage1 else None, "dataset_counts": it.dataset_counts,
        "dataset_constant_answers": it.dataset_constant_answers,
        "advisor_stage1": _advisor(it.advisor_stage1), "advisor": _advisor(it.advisor),
        "stage2_vs_stage1": it.stage2_vs_stage1,
        "agents": {k: {m: v for m, v in a.items() if m != "per_seed_net_pnl_usd"}
                   for k, a in (evaluation.agents if evaluation else {}).items()},
        "hybrid_minus_ppo": evaluation.hybrid_minus_ppo if evaluation else None,
        "evaluation_report": evaluation.report_dir if evaluation else None, "notes": _notes(it),
    }


def _gain(first: dict[str, Any] | None, last: dict[str, Any] | None, key: str) -> float | None:
    if first is None or last is None or first[key] is None or last[key] is None:
        return None
    return last[key] - first[key]


def build_report(market: str, config: TradelabConfig, state: LoopSection) -> dict[str, Any]:
    """The ``loop_report.json`` content for the loop state kept in the manifest."""
    from tradelab.config import config_hash

    iterations = [_iteration(it, state.interruptions) for it in sorted(state.iterations, key=lambda i: i.iteration)]
    warm = _advisor(state.warm_start["advisor"]) if state.warm_start else None
    last = next((it["advisor"] for it in reversed(iterations) if it["advisor"]), None)
    origin_ = state.market_origin or {}
    report = {
        "schema_version": SCHEMA_VERSION, "market": market, "edge": origin_.get("edge"), "market_origin": origin_,
        "seeds": state.settings.seeds, "settings": state.settings.model_dump(), "status": state.status,
        "started_at": state.started_at, "completed_at": state.completed_at,
        "origin": origin(config_hash(config), config.app.seed, profile=config.profile),
        "base_model": next((it.evaluation.base_model.model_dump() for it in state.iterations
                            if it.evaluation is not None and it.evaluation.base_model is not None), None),
        "warm_start": {"advisor": warm}, "iterations": iterations,
        "interruptions": [{"iteration": s.iteration, **_stop(s)} for s in state.interruptions],
        "headline": {"advisor_hit_rate_gain": _gain(warm, last, "hit_rate"),
                     "advisor_balanced_hit_rate_gain": _gain(warm, last, "balanced_hit_rate")},
    }
    report["power"] = power_section(report, state.rule_ceiling, level=config.evaluation.ci_level,
                                    floor=state.constant_floor)
    return report


def write_loop_report(
    report_dir: Path, market: str, config: TradelabConfig, state: LoopSection
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write ``loop_report.json``, ``loop_report.md`` and ``loop_report.png``; return the report and their paths.

    The three are written in full before any replaces its predecessor, so a write that fails (a full disk) leaves
    the previous report whole; temporary files a killed write left are removed first.
    """
    import contextlib

    with writing(report_dir):
        report_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*report_dir.glob(".loop_report.*"), *report_dir.glob("loop_report.png.tmp.png")]:
        stale.unlink(missing_ok=True)
    report = build_report(market, config, state)
    paths = {"json": report_dir / "loop_report.json", "md": report_dir / "loop_report.md",
             "png": report_dir / "loop_report.png"}
    with contextlib.ExitStack() as publish:
        temps = {kind: publish.enter_context(atomic_path(path)) for kind, path in paths.items()}
        with writing(paths["json"]):
            temps["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
            temps["md"].write_text(markdown(report), encoding="utf-8")
            plot_loop(report, temps["png"])
    return report, {k: str(v) for k, v in paths.items()}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    return str(value)


def _ci(value: Any) -> str:
    return "n/a" if not value else f"[{_fmt(value[0])}, {_fmt(value[1])}]"


def _base_line(base: dict[str, Any] | None) -> str:
    return f"{base['name']} (sha256 {base['sha256'] or 'n/a'})" if base else "n/a"


def handed_on_text(run: dict[str, Any] | None) -> str | None:
    """``step k of n (validation reward ...)`` for an iteration's ``stage2_run`` record, or None when its engine did
    not record the step it handed on (the external engines)."""
    if run is None or run.get("published_step") is None or run.get("steps") is None:
        return None
    balanced = ""
    if run.get("val_balanced_published") is not None:  # absent from loops recorded before the figure
        balanced = (f"; sides-balanced {_fmt(run.get('val_balanced_start'))}, {_fmt(run.get('val_balanced_published'))}"
                    f", {_fmt(run.get('val_balanced_end'))}; ranked by {run.get('hand_on_reward') or 'mean'}")
    return (f"step {run['published_step']} of {run['steps']} (validation reward {_fmt(run.get('val_reward_start'))} "
            f"at step 0, {_fmt(run.get('val_reward_published'))} handed on, {_fmt(run.get('val_reward_end'))} at the "
            f"last step{balanced})")


def markdown(report: dict[str, Any]) -> str:
    """The human-readable loop report."""
    origin_ = report["market_origin"]
    market_line = (f"synthetic, edge {origin_['edge']} (generator v{origin_['generator_version']}, "
                   f"seed {origin_['seed']})" if origin_.get("kind") == "synthetic" else origin_.get("kind"))
    lines = [f"# Learning loop: {report['market']}", "",
             f"- Market: {market_line}", f"- Settings: {report['settings']}",
             f"- Run profile: {report['origin'].get('profile', 'not recorded')}, config hash "
             f"{report['origin']['config_hash']}", f"- Status: {report['status']}",
             f"- Advisor base model: {_base_line(report['base_model'])}", "",
             "## Advisor on holdout prompts", "",
             "| when | hit rate | 95% CI | up | down | balanced | 95% CI | mean reward | 95% CI | parse | non-HOLD "
             "| n dir. |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |"]
    rows = [("warm start", report["warm_start"]["advisor"])]
    for it in report["iterations"]:
        rows += [(f"it {it['iteration']} after Stage 1", it["advisor_stage1"]),
                 (f"it {it['iteration']} after Stage 2", it["advisor"])]
    for label, a in rows:
        if a:
            lines.append(f"| {label} | {_fmt(a['hit_rate'])} | {_ci(a['hit_rate_ci'])} | {_fmt(a['hit_rate_up'])} | "
                         f"{_fmt(a['hit_rate_down'])} | {_fmt(a['balanced_hit_rate'])} | "
                         f"{_ci(a['balanced_hit_rate_ci'])} | {_fmt(a['holdout_reward'])} | {_ci(a['holdout_reward_ci'])} | "
                         f"{_fmt(a['parse_rate'])} | {_fmt(a['non_hold_share'])} | {a['directional']} |")
    for it in report["iterations"]:
        lines += ["", f"## Iteration {it['iteration']}", "",
                  f"- Adapter in `{str(it['adapter_in_sha256'])[:12]}` on base `{str(it['base_in_sha256'])[:12]}`, "
                  f"after Stage 1 `{str(it['adapter_stage1_sha256'])[:12]}`, out "
                  + (f"whole model `{str(it['base_out_sha256'])[:12]}`" if it["base_out_sha256"]
                     else f"`{str(it['adapter_out_sha256'])[:12]}`")]
        comparison = it["stage2_vs_stage1"]
        if comparison:
            lines.append(f"- Stage 2 vs Stage 1 on the same prompts: reward gain {_fmt(comparison['reward_gain'])} "
                         f"{_ci(comparison['reward_gain_ci'])}, answers changed "
                         f"{_fmt(comparison['answers_changed'])}, log-prob shift "
                         f"{_fmt(comparison['logprob_shift_mean'], 4)}")
        constant = it["dataset_constant_answers"]
        if constant is not None:  # None in loops recorded before the figure existed
            lines += [f"- Stage 2 {split} split: {constant_answers_text(record)}" for split, record in constant.items()]
        handed_on = handed_on_text(it["stage2_run"])
        if handed_on is not None:
            lines.append(f"- Stage 2 handed on {handed_on}")
        for stop in it["redone"]:
            lines.append(f"- Redone after an interruption: {stop['stage']} ({stop['status']}, found "
                         f"{stop['found_at']}; {stop['redo']})")
        difference = it["hybrid_minus_ppo"]
        if difference:
            lines.append(f"- Hybrid minus PPO-only: {_fmt(difference['net_pnl_usd'])} USD "
                         f"{_ci(difference['net_pnl_usd_ci'])}")
        lines += [f"- Note: {note}" for note in it["notes"]]
        lines += ["", "| agent | net P&L USD | 95% CI (days) | 95% CI (seeds) | trades/day | Sharpe | days |",
                  "| --- | ---: | --- | --- | ---: | ---: | ---: |"]
        for name, a in it["agents"].items():
            lines.append(f"| {name} | {_fmt(a['net_pnl_usd'])} | {_ci(a['net_pnl_usd_ci'])} | "
                         f"{_ci(a['net_pnl_usd_seed_ci'])} | {_fmt(a['trades_per_day'])} | {_fmt(a['sharpe'])} | "
                         f"{a['days']} |")
    lines += power_lines(report.get("power"))
    if report["interruptions"]:
        lines += ["", "## Interruptions", "", "| iteration | where | how it ended | what the resumed loop did |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {s['iteration'] if s['iteration'] is not None else '-'} | {s['stage'] or '-'} | {s['status']} | "
                  f"{s['redo'] or '-'} |" for s in report["interruptions"]]
    lines += ["", f"Headline: advisor_hit_rate_gain={_fmt(report['headline']['advisor_hit_rate_gain'])}", ""]
    return "\n".join(lines)


def plot_loop(report: dict[str, Any], path: Path) -> Path:
    """One PNG: advisor hit rate and holdout reward per measurement, agents' net P&L per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, hits, rewards = ["warm"], [report["warm_start"]["advisor"]], []
    for it in report["iterations"]:
        labels += [f"{it['iteration']}·S1", f"{it['iteration']}·S2"]
        hits += [it["advisor_stage1"], it["advisor"]]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=80)
    for ax, key, title in ((axes[0], "hit_rate", "advisor hit rate (holdout)"),
                           (axes[1], "holdout_reward", "advisor mean reward (holdout)")):
        xs = [i for i, a in enumerate(hits) if a and a[key] is not None]
        ys = [hits[i][key] for i in xs]
        lows = [hits[i][f"{key}_ci"][0] if hits[i][f"{key}_ci"] else hits[i][key] for i in xs]
        highs = [hits[i][f"{key}_ci"][1] if hits[i][f"{key}_ci"] else hits[i][key] for i in xs]
        ax.errorbar(xs, ys, yerr=[np.subtract(ys, lows), np.subtract(highs, ys)], fmt="o-", capsize=3)
        if key == "hit_rate":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            xs = [i for i, a in enumerate(hits) if a and a["balanced_hit_rate"] is not None]
            ax.plot(xs, [hits[i]["balanced_hit_rate"] for i in xs], "s--", label="balanced (up/down)")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title, fontsize=9)
    rewards = report["iterations"]
    names = sorted({n for it in rewards for n in it["agents"]})
    for name in names:
        xs = [it["iteration"] for it in rewards if name in it["agents"]]
        ys = [it["agents"][name]["net_pnl_usd"] or 0.0 for it in rewards if name in it["agents"]]
        axes[2].plot(xs, ys, "o-", label=name)
    axes[2].axhline(0.0, color="grey", lw=0.8, ls="--")
    axes[2].set_title("net P&L after costs (USD, mean over seeds)", fontsize=9)
    axes[2].set_xlabel("iteration", fontsize=8)
    if names:
        axes[2].legend(fontsize=7)
    edge = report["edge"]
    fig.suptitle(f"{report['market']} learning loop (edge {edge})", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
