"""`probe`: an advisor scored on a seeded draw of holdout prompts, beside the rule and the constant answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tradelab import stages
from tradelab.config import TradelabConfig, load_config
from tradelab.errors import StageNotReady


@pytest.fixture(scope="module")
def smoke() -> TradelabConfig:
    return load_config(profile="smoke")


@pytest.fixture(scope="module")
def probe_ws(tmp_path_factory: pytest.TempPathFactory, smoke: TradelabConfig, warm_adapter_dir: Path) -> Path:
    """A 20-session NQ market, the tiny advisor, and the warm-start adapter copied into the workspace."""
    from tradelab.advisor.tiny import ensure_tiny_advisor

    root = tmp_path_factory.mktemp("probe_ws")
    stages.generate_data(root, "NQ", days=20, seed=11, edge=0.3, config=smoke)
    ensure_tiny_advisor(root)
    shutil.copytree(warm_adapter_dir, root / "adapter")
    return root


def test_a_draw_is_the_one_its_seed_names_and_every_answer_set_is_scored_on_it(probe_ws: Path,
                                                                              smoke: TradelabConfig) -> None:
    from tradelab.evaluation.starts import Window
    from tradelab.loop.probe import build_probe_set, momentum_rule_answers, score_answers
    from tradelab.marketdata import load_market_arrays

    report = stages.probe(probe_ws, "NQ", adapter=str(probe_ws / "adapter"), prompts=24, seed=3, config=smoke)
    assert set(report["figures"]) == {"advisor", "rule", "BUY", "SELL", "HOLD"}
    arrays = load_market_arrays(probe_ws, "NQ", smoke)
    probe = build_probe_set(probe_ws, "NQ", smoke, arrays, Window(0, int(arrays.split_index), len(arrays)),
                            n_prompts=24, seed=3)
    assert [row["bar_index"] for row in report["answers"]] == probe.bar_indices
    assert report["draw"]["prompts"] == len(probe) == 24
    rule = score_answers(probe, momentum_rule_answers(probe), seed=smoke.evaluation.base_seed)
    assert report["figures"]["rule"]["hit_rate"] == rule["hit_rate"]
    assert report["figures"]["rule"]["holdout_reward"] == pytest.approx(rule["holdout_reward"])
    assert report["figures"]["BUY"]["balanced_hit_rate"] == pytest.approx(0.5)
    assert report["figures"]["HOLD"]["non_hold_share"] == 0.0
    advisor = report["figures"]["advisor"]
    assert advisor["holdout_reward"] == pytest.approx(sum(r["reward"] for r in report["answers"]) / 24)
    written = json.loads(Path(report["report_path"]).read_text())
    assert written["origin"]["config_hash"] and written["origin"]["seed"] == 3
    assert written["advisor"]["adapter_path"] == "adapter" and written["advisor"]["adapter_sha256"]
    import io

    from rich.console import Console

    from tradelab.cli import render

    buffer = io.StringIO()
    Console(file=buffer, width=200).print(render.probe_table(report))
    shown = buffer.getvalue()
    assert "24 holdout prompts" in shown and "seed 3" in shown and "constant SELL" in shown and "adapter" in shown
    other = stages.probe(probe_ws, "NQ", adapter=str(probe_ws / "adapter"), prompts=24, seed=4, config=smoke)
    assert [r["bar_index"] for r in other["answers"]] != probe.bar_indices
    assert other["report_path"] != report["report_path"]


def test_an_advisor_that_is_not_there_is_refused(probe_ws: Path, smoke: TradelabConfig, tmp_path: Path) -> None:
    with pytest.raises(StageNotReady, match="no stage1 advisor"):
        stages.probe(probe_ws, "NQ", adapter="stage1", prompts=8, seed=0, config=smoke)
    with pytest.raises(StageNotReady, match="adapter_config.json missing"):
        stages.probe(probe_ws, "NQ", adapter=str(tmp_path), prompts=8, seed=0, config=smoke)


def test_the_probe_command_prints_one_line_and_exits_2_for_a_missing_adapter(
        probe_ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tradelab.cli.app import main

    assert main(["--root", str(probe_ws), "probe", "--market", "NQ", "--adapter", str(tmp_path / "none"),
                 "--test"]) == 2
    err = capsys.readouterr().err
    assert "adapter_config.json missing" in err and "Traceback" not in err
