"""The loop report's power section: each comparison's minimum detectable effect next to its observed effect.

A "missed" goal on 480 holdout prompts cannot be told apart from "too few prompts" unless the report says what the
test could have seen. Each comparison therefore carries its minimum detectable effect (MDE, 80% power, 5% two-sided;
:mod:`tradelab.evaluation.power`) and, when it missed, whether the largest effect it could have had was at least that
large:

- the advisor's hit rates (final against warm start) are two proportions; the most they could rise is the best
  simple rule's rate on the same prompts (the rule's ceiling, :func:`rule_ceiling`);
- mean holdout rewards and net P&L carry day-block intervals; their MDE is 2.8 standard errors read off the interval,
  so the days' clustering counts;
- per iteration, Stage 1's distance to the rule's ceiling (in mean holdout reward) is the room Stage 2 had to teach:
  a Stage 2 gain that missed could only have been seen where that room exceeds the gain's MDE. The same distance in
  the sides alone (both answer sets scored at the reward's neutral confidence) says how much of that room is the
  direction and how much the stated confidence.

Next to the ceiling sits the floor: each constant answer (BUY, SELL or HOLD on every prompt) scored on the same
prompts (:func:`constant_floor`). On a holdout that drifts one way a constant answer earns a share of the rule's
reward with no cue at all, and an advisor's reward means something only above it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from tradelab.evaluation.power import mde_from_interval, mde_proportions, power_multiplier

if TYPE_CHECKING:
    from tradelab.loop.probe import ProbeSet

CEILING_KEYS: tuple[str, ...] = (
    "hit_rate", "hit_rate_ci", "balanced_hit_rate", "balanced_hit_rate_ci", "holdout_reward", "holdout_reward_ci",
    "sides_reward", "directional", "prompts",
)
"""The rule's figures kept in the loop state and report."""


def rule_ceiling(probe: ProbeSet, *, level: float, seed: int) -> dict[str, Any]:
    """The best simple rule (follow the 5-bar return) scored on the loop's holdout prompts, like any advisor."""
    from tradelab.loop.probe import momentum_rule_answers, score_answers

    figures = score_answers(probe, momentum_rule_answers(probe), level=level, seed=seed)
    return {key: figures[key] for key in CEILING_KEYS}


FLOOR_KEYS: tuple[str, ...] = ("hit_rate", "holdout_reward", "holdout_reward_ci")
"""A constant answer's figures kept in the loop state and report."""


def constant_floor(probe: ProbeSet, *, level: float, seed: int) -> dict[str, dict[str, Any]]:
    """Each constant answer scored on the loop's holdout prompts like any advisor: what no cue at all earns."""
    from tradelab.grpo.baselines import CONSTANT_ACTIONS, constant_answer
    from tradelab.loop.probe import score_answers

    floor = {}
    for action in CONSTANT_ACTIONS:
        figures = score_answers(probe, [constant_answer(action)] * len(probe), level=level, seed=seed)
        floor[action] = {key: figures[key] for key in FLOOR_KEYS}
    return floor


def stage1_records(llm_stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a Stage 1 run's refinements learned from: how many examples in all, and the last refinement's window.

    Args:
        llm_stats: The Stage 1 summary's ``llm_stats`` (its ``refinements`` history); None without an advisor.

    Returns:
        ``{refinements, examples, last_records, last_entry_records, last_hindsight_bars}`` (examples summed over
        refinements; a record in several windows counts once per refinement).
    """
    history = list((llm_stats or {}).get("refinements") or [])
    last = history[-1] if history else {}
    return {"refinements": len(history), "examples": sum(int(h.get("examples") or 0) for h in history),
            "last_records": last.get("records"), "last_entry_records": last.get("entry_records"),
            "last_hindsight_bars": last.get("hindsight_bars")}


def _se(interval: Any, level: float) -> float | None:
    if not interval:
        return None
    return 0.5 * (float(interval[1]) - float(interval[0])) / NormalDist().inv_cdf(0.5 + level / 2.0)


def _apart(a: Any, b: Any) -> bool:
    return bool(a) and bool(b) and (a[1] < b[0] or b[1] < a[0])


def comparison(name: str, observed: float | None, mde: float | None, *, goal: str, met: bool,
               headroom: float | None = None, ci: Any = None, unit: str = "") -> dict[str, Any]:
    """One row of the power section.

    ``could_have_seen`` is None unless the goal was missed and the largest effect possible (``headroom``) is known:
    then it says whether that effect reaches the MDE.
    """
    could = None
    if not met and headroom is not None and mde is not None:
        could = headroom >= mde
    return {"name": name, "observed": observed, "ci": ci, "mde": mde, "unit": unit, "goal": goal, "met": met,
            "headroom": headroom, "could_have_seen": could}


def _mean_difference_mde(a: Mapping[str, Any], b: Mapping[str, Any], level: float) -> float | None:
    """MDE of the difference of two means measured with independent intervals (conservative for paired prompts)."""
    se_a, se_b = _se(a.get("holdout_reward_ci"), level), _se(b.get("holdout_reward_ci"), level)
    if se_a is None or se_b is None:
        return None
    return power_multiplier() * math.sqrt(se_a ** 2 + se_b ** 2)


def _advisor_rows(warm: Mapping[str, Any], final: Mapping[str, Any], rule: Mapping[str, Any] | None,
                  level: float) -> list[dict[str, Any]]:
    rows = []
    for key, label in (("hit_rate", "advisor hit rate, final - warm start"),
                       ("balanced_hit_rate", "advisor balanced hit rate, final - warm start")):
        if warm.get(key) is None or final.get(key) is None:
            continue
        mde = mde_proportions(warm[key], warm["directional"], final["directional"])
        ceiling = (rule or {}).get(key)
        rows.append(comparison(label, final[key] - warm[key], mde, goal="intervals apart",
                               met=_apart(final.get(f"{key}_ci"), warm.get(f"{key}_ci")) and final[key] > warm[key],
                               headroom=None if ceiling is None else ceiling - warm[key]))
    if warm.get("holdout_reward") is not None and final.get("holdout_reward") is not None:
        ceiling = (rule or {}).get("holdout_reward")
        rows.append(comparison(
            "advisor mean holdout reward, final - warm start", final["holdout_reward"] - warm["holdout_reward"],
            _mean_difference_mde(warm, final, level), goal="intervals apart",
            met=_apart(final.get("holdout_reward_ci"), warm.get("holdout_reward_ci"))
            and final["holdout_reward"] > warm["holdout_reward"],
            headroom=None if ceiling is None else ceiling - warm["holdout_reward"]))
    return rows


def stage2_room(iteration: Mapping[str, Any], rule: Mapping[str, Any] | None, level: float) -> dict[str, Any] | None:
    """Stage 1's distance to the rule's ceiling next to Stage 2's gain, its MDE and whether a miss could be seen."""
    gain = iteration.get("stage2_vs_stage1")
    stage1 = iteration.get("advisor_stage1")
    if not gain or not stage1:
        return None
    ceiling_reward = (rule or {}).get("holdout_reward")
    distance = None if ceiling_reward is None or stage1.get("holdout_reward") is None else (
        ceiling_reward - stage1["holdout_reward"])
    hit_distance = None if (rule or {}).get("hit_rate") is None or stage1.get("hit_rate") is None else (
        rule["hit_rate"] - stage1["hit_rate"])
    sides_distance = None if (rule or {}).get("sides_reward") is None or stage1.get("sides_reward") is None else (
        rule["sides_reward"] - stage1["sides_reward"])
    ci = gain.get("reward_gain_ci")
    row = comparison(f"it{iteration['iteration']} Stage 2 gain in mean holdout reward", gain.get("reward_gain"),
                     mde_from_interval(ci, level=level), goal="lower bound > 0", met=bool(ci) and ci[0] > 0,
                     headroom=distance, ci=ci)
    return {**row, "iteration": iteration["iteration"], "stage1_to_ceiling_reward": distance,
            "stage1_to_ceiling_hit_rate": hit_distance, "stage1_to_ceiling_sides_reward": sides_distance,
            "room_exceeds_mde": None if distance is None or row["mde"] is None else distance > row["mde"]}


def power_section(report: Mapping[str, Any], rule: Mapping[str, Any] | None, *, level: float,
                  floor: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``power`` section of ``loop_report.json``: the rule's ceiling, the constant answers' floor
    (:func:`constant_floor`), the comparisons and Stage 2's room."""
    warm = report["warm_start"]["advisor"]
    iterations = report["iterations"]
    last = next((it for it in reversed(iterations) if it.get("advisor")), None)
    rows: list[dict[str, Any]] = []
    if warm and last:
        rows += _advisor_rows(warm, last["advisor"], rule, level)
    stage2 = [room for room in (stage2_room(it, rule, level) for it in iterations) if room is not None]
    rows += stage2
    for it in iterations:
        diff = it.get("hybrid_minus_ppo")
        if diff:
            ci = diff.get("net_pnl_usd_ci")
            rows.append(comparison(f"it{it['iteration']} hybrid - PPO-only net P&L per seed", diff["net_pnl_usd"],
                                   mde_from_interval(ci, level=level), goal="lower bound > 0",
                                   met=bool(ci) and ci[0] > 0, ci=ci, unit="USD"))
    records = [{"iteration": it["iteration"], "stage1": (it.get("stage1") or {}).get("records"),
                "stage2_dataset": it.get("dataset_counts"),
                "stage2_groups": (it.get("stage2_run") or {}).get("group_signal")} for it in iterations]
    return {"alpha": 0.05, "power": 0.8, "rule_ceiling": dict(rule) if rule else None,
            "constant_floor": dict(floor) if floor else None, "comparisons": rows, "stage2_room": stage2,
            "records": records}


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.3f}"


def _verdict(row: Mapping[str, Any]) -> str:
    if row["met"]:
        return "met"
    if row["mde"] is None:
        return "missed; no interval with a spread at this size, so no MDE"
    if row["could_have_seen"] is None:
        return f"missed; effects below the MDE ({_num(row['mde'])}) are likely to be missed at this size"
    if row["could_have_seen"]:
        return f"missed, and the test could have seen it (room {_num(row['headroom'])} >= MDE)"
    return f"missed, but the test could not have seen it (room {_num(row['headroom'])} < MDE)"


def records_text(used: Mapping[str, Any]) -> str:
    """One line: Stage 1's refinement examples and window, Stage 2's groups and how many carried a signal."""
    parts = []
    stage1 = used.get("stage1")
    if stage1:
        parts.append(f"Stage 1 {stage1['refinements']} refinement(s), {stage1['examples']} examples in all; the last "
                     f"window {stage1['last_records']} experience records ({stage1['last_entry_records']} entries) + "
                     f"{stage1['last_hindsight_bars']} labelled flat bars")
    groups = used.get("stage2_groups")
    if groups:
        share = groups.get("zero_variance_share")
        parts.append(f"Stage 2 {groups['groups_sampled']} groups sampled, "
                     f"{'n/a' if share is None else f'{share:.0%}'} with zero reward variance, "
                     f"{groups['groups_kept']} trained on")
    return "; ".join(parts) or "n/a"


def room_split_text(room: Mapping[str, Any]) -> str:
    """Where Stage 1's distance to the rule's reward lies: the sides (scored at neutral confidence) and the hit rate.

    The confidence's share is the rest: a Stage 1 advisor on the rule's sides that states one confidence everywhere
    is below the rule's reward by the calibration term alone, room that only a change of confidence can take.
    """
    total, sides = room.get("stage1_to_ceiling_reward"), room.get("stage1_to_ceiling_sides_reward")
    split = "" if total is None or sides is None else (
        f"{_num(sides)} of it in the sides at neutral confidence, {_num(total - sides)} in the stated confidence; ")
    return f"{split}hit rate {_num(room.get('stage1_to_ceiling_hit_rate'))} below"


def floor_text(floor: Mapping[str, Any], rule: Mapping[str, Any] | None) -> str:
    """Each constant answer's mean holdout reward, its interval and its share of the rule's reward."""
    ceiling = rule.get("holdout_reward") if rule else None
    parts = []
    for action, figures in floor.items():
        reward, ci = figures["holdout_reward"], figures["holdout_reward_ci"]
        share = f", {reward / ceiling:.0%} of the rule's" if reward is not None and ceiling else ""
        interval = f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""
        parts.append(f"{action} {_num(reward)}{interval}{share}")
    return "; ".join(parts)


def power_lines(section: Mapping[str, Any] | None) -> list[str]:
    """The loop report's markdown section on power (empty without one)."""
    if not section:
        return []
    lines = ["", "## Power (80%, 5% two-sided)", ""]
    rule = section.get("rule_ceiling")
    if rule:
        lines.append(f"- The rule's ceiling on these prompts (BUY if the 5-bar return is up, else SELL): hit rate "
                     f"{_num(rule['hit_rate'])}, balanced {_num(rule['balanced_hit_rate'])}, mean reward "
                     f"{_num(rule['holdout_reward'])}")
    floor = section.get("constant_floor")
    if floor:
        lines.append(f"- A constant answer on these prompts (no cue at all): {floor_text(floor, rule)}")
    for room in section.get("stage2_room") or []:
        lines.append(f"- Iteration {room['iteration']}: Stage 1 is {_num(room['stage1_to_ceiling_reward'])} below the "
                     f"rule's mean reward ({room_split_text(room)}); Stage 2 gained {_num(room['observed'])}, MDE "
                     f"{_num(room['mde'])}")
    for used in section.get("records") or []:
        lines.append(f"- Iteration {used['iteration']} learned from: {records_text(used)}")
    lines += ["", "| comparison | observed | MDE | goal | verdict |", "| --- | ---: | ---: | --- | --- |"]
    for row in section.get("comparisons") or []:
        lines.append(f"| {row['name']} | {_num(row['observed'])} | {_num(row['mde'])} | {row['goal']} | "
                     f"{_verdict(row)} |")
    return lines
