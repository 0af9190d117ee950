"""``evaluate()`` end to end with the baseline agents: report files, manifest summary, CI, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tradelab.config import TradelabConfig, load_config
from tradelab.errors import ConfigError, DataError, StageNotReady
from tradelab.evaluation.aggregate import confidence_interval
from tradelab.evaluation.run import evaluate
from tradelab.manifest import load_manifest, merge_stage1, update_manifest

BASELINES = ["flat", "buy_and_hold", "random"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(eval_root: Path, baseline_config: TradelabConfig) -> dict[str, Any]:
    calls: list[tuple[int, int]] = []
    summary = evaluate(eval_root, "NQ", baseline_config, episodes=2, seeds=3, adapter="stage1", walk_forward=True,
                       cost_sweep=True, progress=lambda done, total: calls.append((done, total)))
    report = json.loads((Path(summary.report_dir) / "report.json").read_text())
    return {"summary": summary, "report": report, "calls": calls}


def test_report_json_has_every_metric_per_agent(run: dict[str, Any], baseline_config: TradelabConfig
                                                ) -> None:
    report = run["report"]
    assert list(report["agents"]) == BASELINES
    for name in BASELINES:
        entry = report["agents"][name]
        for key in ("net_pnl_usd", "sharpe", "sortino", "max_drawdown", "calmar", "trades", "win_rate",
                    "profit_factor", "expectancy_r", "avg_bars_held", "exposure", "turnover", "drawdown_breaches",
                    "flatten_violations"):
            assert key in entry and key in entry["ci"], (name, key)
        assert entry["n_seeds"] == 3 and len(entry["per_seed"]) == 3
    assert report["settings"]["profile"] == "smoke" == report["origin"]["profile"] == run["summary"].profile
    assert report["settings"]["episode_bars"] == baseline_config.evaluation.episode_bars == 45
    assert report["settings"]["skipped_agents"] == {}
    assert len(report["walk_forward"]) == 3
    assert report["market"] == "NQ" and report["origin"]["config_hash"]


def test_ci_is_computed_over_the_seeds(run: dict[str, Any]) -> None:
    entry = run["report"]["agents"]["random"]
    values = [seed["net_pnl_usd"] for seed in entry["per_seed"]]
    assert len(set(values)) > 1  # different seeds drew different starts
    mean, low, high = confidence_interval(values, 0.95)
    assert entry["net_pnl_usd"] == pytest.approx(mean)
    assert entry["ci"]["net_pnl_usd"] == pytest.approx([low, high])
    assert low < mean < high


def test_report_md_and_pngs_are_written(run: dict[str, Any]) -> None:
    report_dir = Path(run["summary"].report_dir)
    assert report_dir.parent.name == "NQ" and report_dir.parent.parent.name == "reports"
    md = (report_dir / "report.md").read_text()
    for heading in ("## Trading", "## Rule compliance", "## Intervals (95%)", "## Selection-aware Sharpe",
                    "## Cost sweep", "## Regimes", "## Across seeds", "## Walk-forward fold 2"):
        assert heading in md
    assert all(f"| {name} |" in md for name in BASELINES)
    trades = [json.loads(line) for line in (report_dir / "trades.jsonl").read_text().splitlines()]
    for name in BASELINES:
        mine = [t for t in trades if t["agent"] == name]
        assert len(mine) == sum(s["trades"] for s in run["report"]["agents"][name]["per_seed"])
        assert sum(t["pnl_usd"] for t in mine) == pytest.approx(
            sum(s["net_pnl_usd"] for s in run["report"]["agents"][name]["per_seed"]))
    assert run["report"]["plots"] == ["equity_drawdown.png", "r_multiples.png", "cost_sweep.png"]
    for name in run["report"]["plots"]:
        data = (report_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and 5_000 < len(data) < 200_000


def test_report_has_honest_intervals_selection_costs_and_regimes(run: dict[str, Any]) -> None:
    report = run["report"]
    for name in BASELINES:
        rows = report["intervals"][name]["rows"]
        per_seed = report["agents"][name]["per_seed"]
        assert rows["net_pnl_usd_per_seed"]["n"] == 3 and rows["net_pnl_usd_per_seed"]["unit"] == "seeds"
        assert rows["mean_daily_pnl_usd"]["n"] >= sum(s["episodes"] for s in per_seed)  # a day per episode at least
        assert rows["win_rate"]["n"] == sum(s["trades"] for s in per_seed)
        low_high = rows["win_rate"]["ci"]
        assert low_high is None or 0.0 <= low_high[0] <= low_high[1] <= 1.0
        sweep = report["cost_sweep"]["agents"][name]
        one_x = next(r for r in sweep["rows"] if r["multiple"] == 1.0)
        assert one_x["net_pnl_usd"] == pytest.approx(report["agents"][name]["net_pnl_usd"])
        assert sweep["entries_matching_bars"] == sweep["trades"]
    assert report["selection"]["n_trials"] >= 1  # baselines only: no trained configuration, one trial
    truth = report["regimes"]["ground_truth"]
    assert truth is not None and truth["agreement"]["bars"] > 0
    assert sum(truth["holdout_bars"].values()) == report["holdout"]["bars"]
    design = report["walk_forward_design"]
    first_fold = report["walk_forward"][0]
    assert first_fold["test_start"] == report["holdout"]["start_index"] + design["purge_bars"] + design["embargo_bars"]
    assert first_fold["train_end"] <= first_fold["test_start"] - design["purge_bars"] - design["embargo_bars"]


def test_summary_goes_into_the_manifest(run: dict[str, Any], eval_root: Path) -> None:
    summary = run["summary"]
    assert [row["agent"] for row in summary.table] == BASELINES
    assert set(summary.table[0]) == {"agent", "net_pnl_usd", "sharpe", "max_drawdown", "win_rate",
                                        "profit_factor", "trades"}
    stored = [e for e in load_manifest(eval_root, "NQ")["evaluation"] if e["report_dir"] == summary.report_dir]
    assert stored == [summary.record()]
    done, total = run["calls"][-1]
    assert done == total == 3 * 3 * 2 * 3  # agents x seeds x episodes x windows


def test_requires_a_completed_stage1(workspace_factory: Any, tmp_path: Path, baseline_config: TradelabConfig) -> None:
    root = workspace_factory(tmp_path)
    merge_stage1(root, "NQ", {"status": "running"})
    with pytest.raises(StageNotReady, match="stage1"):
        evaluate(root, "NQ", baseline_config)


def test_refuses_bars_changed_since_stage1(workspace_factory: Any, tmp_path: Path,
                                           baseline_config: TradelabConfig) -> None:
    root = workspace_factory(tmp_path)
    update_manifest(root, "NQ", lambda m: m["data"].__setitem__("sha256", "0" * 64))
    with pytest.raises(DataError, match="sha256"):
        evaluate(root, "NQ", baseline_config)


def test_refuses_a_holdout_overlapping_training(workspace_factory: Any, tmp_path: Path,
                                                baseline_config: TradelabConfig) -> None:
    root = workspace_factory(tmp_path)
    update_manifest(root, "NQ", lambda m: m["data"].__setitem__("train_end", m["data"]["holdout_start"]))
    with pytest.raises(DataError, match="overlap"):
        evaluate(root, "NQ", baseline_config)


def test_missing_adapter_is_a_clear_error(eval_root: Path) -> None:
    config = load_config(overrides={"evaluation.agents": ["hybrid", "flat"]})
    with pytest.raises(StageNotReady, match="stage1_lora"):
        evaluate(eval_root, "NQ", config, adapter="stage1")
    with pytest.raises(StageNotReady, match="soft_grpo"):
        evaluate(eval_root, "NQ", config, adapter="soft_grpo")


def test_adapter_none_skips_the_advisor_agents(eval_root: Path) -> None:
    config = load_config(overrides={"evaluation.agents": ["hybrid", "advisor", "flat"], "evaluation.plots": False})
    summary = evaluate(eval_root, "NQ", config, episodes=1, seeds=1, adapter="none")
    report = json.loads((Path(summary.report_dir) / "report.json").read_text())
    assert list(report["agents"]) == ["flat"]
    assert set(report["settings"]["skipped_agents"]) == {"hybrid", "advisor"}
    assert report["plots"] == []


def test_bad_arguments_are_config_errors(eval_root: Path, baseline_config: TradelabConfig) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        evaluate(eval_root, "NQ", baseline_config, episodes=0)
    with pytest.raises(ConfigError, match="adapter"):
        evaluate(eval_root, "NQ", baseline_config, adapter="latest")
