"""The loop report's power section on hand-made figures: each MDE, and whether a miss could have been seen."""

from __future__ import annotations

import pytest

from tradelab.evaluation.power import mde_from_interval, mde_proportions
from tradelab.loop.power import power_lines, power_section


def _advisor(hit: float, reward: float, ci: float, directional: int = 400) -> dict:
    return {"hit_rate": hit, "hit_rate_ci": [hit - ci, hit + ci], "balanced_hit_rate": hit,
            "balanced_hit_rate_ci": [hit - ci, hit + ci], "holdout_reward": reward,
            "holdout_reward_ci": [reward - 0.1, reward + 0.1], "directional": directional}


RULE = {"hit_rate": 0.60, "balanced_hit_rate": 0.60, "holdout_reward": 0.60, "holdout_reward_ci": [0.5, 0.7]}


def _report(stage1_reward: float, gain_ci: list[float]) -> dict:
    iteration = {"iteration": 1, "advisor_stage1": _advisor(0.55, stage1_reward, 0.05),
                 "advisor": _advisor(0.56, stage1_reward + 0.02, 0.05),
                 "stage2_vs_stage1": {"reward_gain": 0.02, "reward_gain_ci": gain_ci},
                 "hybrid_minus_ppo": {"net_pnl_usd": 900.0, "net_pnl_usd_ci": [-100.0, 1900.0]}}
    return {"warm_start": {"advisor": _advisor(0.52, 0.10, 0.05)}, "iterations": [iteration]}


def test_stage2_room_says_a_miss_could_have_been_seen_only_when_stage1_left_more_than_the_mde() -> None:
    roomy = power_section(_report(0.10, [-0.03, 0.07]), RULE, level=0.95)["stage2_room"][0]
    assert roomy["stage1_to_ceiling_reward"] == pytest.approx(0.50)
    assert roomy["mde"] == pytest.approx(mde_from_interval([-0.03, 0.07])) and roomy["mde"] < 0.5
    assert not roomy["met"] and roomy["could_have_seen"] is True and roomy["room_exceeds_mde"] is True
    tight = power_section(_report(0.58, [-0.03, 0.07]), RULE, level=0.95)["stage2_room"][0]
    assert tight["stage1_to_ceiling_reward"] == pytest.approx(0.02) and tight["could_have_seen"] is False
    met = power_section(_report(0.10, [0.01, 0.05]), RULE, level=0.95)["stage2_room"][0]
    assert met["met"] and met["could_have_seen"] is None


def test_every_comparison_carries_its_mde_and_the_markdown_prints_them() -> None:
    section = power_section(_report(0.10, [-0.03, 0.07]), RULE, level=0.95)
    rows = {row["name"]: row for row in section["comparisons"]}
    hit = rows["advisor hit rate, final - warm start"]
    assert hit["observed"] == pytest.approx(0.04) and hit["mde"] == pytest.approx(mde_proportions(0.52, 400, 400))
    assert not hit["met"] and hit["headroom"] == pytest.approx(0.08) and hit["could_have_seen"] is (0.08 >= hit["mde"])
    pnl = rows["it1 hybrid - PPO-only net P&L per seed"]
    assert pnl["mde"] == pytest.approx(mde_from_interval([-100.0, 1900.0])) and pnl["could_have_seen"] is None
    assert all(row["mde"] is not None for row in section["comparisons"])
    text = "\n".join(power_lines(section))
    assert "rule's ceiling" in text and "Stage 1 is 0.500 below the rule's mean reward" in text
    assert "could have seen it" in text and "likely to be missed" in text
    assert power_lines(None) == []


def test_the_records_each_iteration_learned_from_are_reported() -> None:
    from tradelab.loop.power import records_text, stage1_records

    used = stage1_records({"refinements": [
        {"examples": 300, "records": 400, "entry_records": 90, "hindsight_bars": 0},
        {"examples": 2300, "records": 500, "entry_records": 120, "hindsight_bars": 2048}]})
    assert used == {"refinements": 2, "examples": 2600, "last_records": 500, "last_entry_records": 120,
                    "last_hindsight_bars": 2048}
    assert stage1_records(None)["refinements"] == 0
    report = _report(0.10, [-0.03, 0.07])
    report["iterations"][0]["stage1"] = {"records": used}
    report["iterations"][0]["stage2_run"] = {"group_signal": {"groups_sampled": 240, "groups_kept": 200,
                                                              "zero_variance_share": 0.25}}
    section = power_section(report, RULE, level=0.95)
    text = records_text(section["records"][0])
    assert "2600 examples" in text and "120 entries) + 2048 labelled flat bars" in text
    assert "240 groups sampled, 25% with zero reward variance, 200 trained on" in text


def test_a_gain_of_exactly_zero_on_every_prompt_has_no_mde() -> None:
    section = power_section(_report(0.10, [0.0, 0.0]), RULE, level=0.95)
    room = section["stage2_room"][0]
    assert room["mde"] is None and room["could_have_seen"] is None and room["room_exceeds_mde"] is None
    assert "no MDE" in "\n".join(power_lines(section))


def test_the_constant_floor_scores_each_constant_answer_on_the_probe_prompts() -> None:
    import numpy as np
    from stage2_factory import make_record

    from tradelab.core.ground_truth import build_ground_truth, dumps
    from tradelab.loop.power import constant_floor
    from tradelab.loop.probe import ProbeSet

    trends = ["up", "up", "up", "down"]
    probe = ProbeSet(bar_indices=list(range(4)), contexts=[{"market": "NQ"}] * 4, messages=[],
                     ground_truths=[dumps(build_ground_truth(make_record(i, trend=t))) for i, t in enumerate(trends)],
                     moves_points=np.array([5.0, 4.0, 3.0, -6.0]), session_ids=np.arange(4))
    floor = constant_floor(probe, level=0.95, seed=0)
    assert set(floor) == {"BUY", "SELL", "HOLD"}
    assert floor["BUY"]["hit_rate"] == pytest.approx(0.75) and floor["SELL"]["hit_rate"] == pytest.approx(0.25)
    assert floor["HOLD"]["hit_rate"] is None  # HOLD is not directional
    assert floor["BUY"]["holdout_reward"] > floor["SELL"]["holdout_reward"]  # three of the four moves went up


def test_the_report_prints_the_floor_as_a_share_of_the_rules_reward() -> None:
    floor = {"BUY": {"hit_rate": 0.57, "holdout_reward": 0.30, "holdout_reward_ci": [0.25, 0.35]},
             "SELL": {"hit_rate": 0.43, "holdout_reward": 0.06, "holdout_reward_ci": [0.0, 0.12]},
             "HOLD": {"hit_rate": None, "holdout_reward": -0.15, "holdout_reward_ci": [-0.2, -0.1]}}
    section = power_section(_report(0.10, [0.01, 0.05]), RULE, level=0.95, floor=floor)
    assert section["constant_floor"] == floor
    line = next(line for line in power_lines(section) if "constant answer" in line)
    assert "BUY 0.300 [0.250, 0.350], 50% of the rule's" in line and "SELL 0.060" in line and "HOLD -0.150" in line


def test_stage2_room_splits_stage1s_distance_into_sides_and_confidence() -> None:
    from tradelab.loop.power import room_split_text

    report = _report(0.52, [-0.01, 0.03])
    report["iterations"][0]["advisor_stage1"]["sides_reward"] = 0.61
    room = power_section(report, {**RULE, "sides_reward": 0.62}, level=0.95)["stage2_room"][0]
    assert room["stage1_to_ceiling_reward"] == pytest.approx(0.08)
    assert room["stage1_to_ceiling_sides_reward"] == pytest.approx(0.01)  # the rest, 0.07, is the confidence
    assert "0.010 of it in the sides at neutral confidence, 0.070 in the stated confidence" in room_split_text(room)
    without = power_section(_report(0.52, [-0.01, 0.03]), RULE, level=0.95)["stage2_room"][0]
    assert without["stage1_to_ceiling_sides_reward"] is None
    assert room_split_text(without) == "hit rate 0.050 below"


def test_the_handed_on_line_shows_both_validation_figures_when_the_run_recorded_them() -> None:
    from tradelab.loop.report import handed_on_text

    run = {"published_step": 4, "steps": 6, "val_reward_start": 0.254, "val_reward_published": 0.262,
           "val_reward_end": 0.286, "val_balanced_start": 0.159, "val_balanced_published": 0.160,
           "val_balanced_end": 0.156, "hand_on_reward": "sides_balanced"}
    assert handed_on_text(run) == ("step 4 of 6 (validation reward 0.254 at step 0, 0.262 handed on, 0.286 at the last "
                                   "step; sides-balanced 0.159, 0.160, 0.156; ranked by sides_balanced)")
    older = {k: v for k, v in run.items() if not k.startswith("val_balanced") and k != "hand_on_reward"}
    assert handed_on_text(older).endswith("0.286 at the last step)")  # a loop recorded before the balanced figure
    assert handed_on_text({"published_step": None, "steps": 6}) is None and handed_on_text(None) is None
