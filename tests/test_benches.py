"""No bench rots: every ``bench/*.py`` runs at its tiny ``--smoke`` size and prints its headline ``key=value`` last.

The figures of a smoke run mean nothing (sizes too small to time); what is checked is that the script still runs
against the current code and still ends with its headline line, as ``make bench`` and the README's table expect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))
HEADLINE = re.compile(r"^[a-z][a-z0-9_.]*=\S+$")
"""``name=value``: a bench's last line (``generate_bars_per_s=5899684``, ``cuda_available=0`` on a CPU machine)."""


def test_every_bench_is_covered() -> None:
    assert len(SCRIPTS) >= 11 and all(path.name != "__init__.py" for path in SCRIPTS)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_the_bench_runs_at_its_smoke_size_and_ends_with_its_headline(script: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=840, check=False, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, f"{script.name} --smoke failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and HEADLINE.match(lines[-1]), f"{script.name}: last line {lines[-1:]!r} is not key=value"


def _learning_bench():
    """``bench/learning.py`` as a module (benches are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_bench", BENCH / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_learning_bench_keeps_a_workspace_that_holds_its_market_so_a_killed_run_resumes(tmp_path: Path) -> None:
    from argparse import Namespace

    from tradelab import stages

    bench = _learning_bench()
    args = Namespace(data_seed=5, days=2)
    assert not bench.holds_market(tmp_path, 0.3, args)
    stages.generate_data(tmp_path, "NQ", days=2, seed=5, edge=0.3)
    assert bench.holds_market(tmp_path, 0.3, args)
    assert not bench.holds_market(tmp_path, 0.2, args)
    assert not bench.holds_market(tmp_path, 0.3, Namespace(data_seed=6, days=2))
    assert not bench.holds_market(tmp_path, 0.3, Namespace(data_seed=5, days=3))


def _null_report(balanced: float, balanced_ci: list[float], hit: float, hit_ci: list[float]) -> dict:
    agent = {"net_pnl_usd": -500.0, "net_pnl_usd_ci": [-2000.0, 900.0]}
    advisor = {"balanced_hit_rate": balanced, "balanced_hit_rate_ci": balanced_ci, "hit_rate": hit,
               "hit_rate_ci": hit_ci, "directional": 240}
    warm = {"balanced_hit_rate": 0.5, "balanced_hit_rate_ci": [0.47, 0.53], "hit_rate": 0.45,
            "hit_rate_ci": [0.35, 0.55], "directional": 93}
    return {"warm_start": {"advisor": warm},
            "iterations": [{"iteration": 1, "agents": {"hybrid": agent, "ppo": agent}, "advisor_stage1": warm,
                            "advisor": advisor}],
            "power": {"constant_floor": {"BUY": {"hit_rate": 0.588}}}}


def test_the_null_verdict_reads_the_balanced_hit_rate_which_a_constant_answer_cannot_game(
        capsys: pytest.CaptureFixture[str]) -> None:
    bench = _learning_bench()
    # Mostly BUY on prompts that drifted up: the plain hit rate excludes 0.5, the balanced rate does not.
    assert bench.print_null(_null_report(0.493, [0.479, 0.510], 0.579, [0.516, 0.640]))
    out = capsys.readouterr().out
    assert "advisor balanced hit rate it1 after Stage 2: 0.493" in out and "a constant BUY's 0.588" in out
    assert "advisor balanced hit rate it1 after Stage 1: 0.500" in out
    assert "LEAK?" not in out and "null market clean: True" in out
    # An advisor that tells up from down on a market without an edge is flagged, whatever its plain rate.
    assert not bench.print_null(_null_report(0.571, [0.510, 0.630], 0.546, [0.483, 0.608]))
    assert "LEAK?" in capsys.readouterr().out
    # Every measurement counts, not just the last: a Stage 1 advisor that told up from down is flagged.
    report = _null_report(0.493, [0.479, 0.510], 0.579, [0.516, 0.640])
    report["iterations"][0]["advisor_stage1"] = {**report["iterations"][0]["advisor"], "balanced_hit_rate": 0.571,
                                                 "balanced_hit_rate_ci": [0.510, 0.630]}
    assert not bench.print_null(report)
    assert "it1 after Stage 1: 0.571 [0.510, 0.630] LEAK?" in capsys.readouterr().out


def test_the_edge_goals_say_when_the_rule_is_below_the_balanced_goal_and_where_stage2s_room_lies(
        capsys: pytest.CaptureFixture[str]) -> None:
    bench = _learning_bench()

    def advisor(balanced: float, reward: float) -> dict:
        return {"balanced_hit_rate": balanced, "balanced_hit_rate_ci": [balanced - 0.05, balanced + 0.05],
                "holdout_reward": reward, "holdout_reward_ci": [reward - 0.05, reward + 0.05]}

    room = {"iteration": 1, "ci": [-0.01, 0.05], "room_exceeds_mde": True, "stage1_to_ceiling_reward": 0.045,
            "stage1_to_ceiling_sides_reward": 0.012, "stage1_to_ceiling_hit_rate": 0.027}
    report = {"edge": 0.3, "warm_start": {"advisor": advisor(0.5, -0.05)},
              "iterations": [{"advisor": advisor(0.526, 0.38), "hybrid_minus_ppo": None}],
              "power": {"rule_ceiling": {"holdout_reward": 0.407, "balanced_hit_rate": 0.544},
                        "constant_floor": None, "stage2_room": [room]}}
    bench.print_goals(report)
    out = capsys.readouterr().out
    assert "the rule itself scores 0.544 balanced on these prompts" in out
    assert "gain lower bound > 0: MISSED (the room: 0.012 of it in the sides at neutral confidence, 0.033 in the " \
           "stated confidence; hit rate 0.027 below)" in out
    report["power"]["rule_ceiling"]["balanced_hit_rate"] = 0.602
    bench.print_goals(report)
    assert "the rule itself" not in capsys.readouterr().out
