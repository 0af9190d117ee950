"""``--ray``: 2 markets x 2 seeds as Ray tasks on a local head bound to 127.0.0.1 give the figures of running each
market's evaluation one by one; a task's error comes back as our own exception, and through the CLI as one line and
exit 2. The fixture stops the head and checks that no process Ray started outlives it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tradelab import stages
from tradelab.cli.app import main
from tradelab.config import TradelabConfig, load_config
from tradelab.errors import ConfigError, StageFailed
from tradelab.fanout import LOCAL, fan_out, init_local_ray
from tradelab.manifest_schema import EvaluationSummary
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.taskspace import FANOUT_DIR

pytestmark = pytest.mark.slow

MARKETS = ("NQ", "ES")
SEEDS = 2
BASELINES = ["flat", "buy_and_hold", "random"]
RUN_OPTIONS: dict[str, Any] = {"episodes": 2, "seeds": SEEDS, "walk_forward": 2, "cost_sweep": True}
VARYING = ("created_at", "report_dir", "origin", "plots")
"""Report keys that differ between any two runs (time, folder, provenance stamp)."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A private Ray instance: head, workers and object store on 127.0.0.1 only, 2 CPUs; stopped afterwards."""
    import psutil
    import ray

    assert not ray.is_initialized()
    init_local_ray(num_cpus=2)
    try:
        yield ray
    finally:
        spawned = psutil.Process().children(recursive=True)
        ray.shutdown()
        _gone, alive = psutil.wait_procs(spawned, timeout=60)
        for proc in alive:  # ours, by pid: never left running, even when the test fails
            proc.kill()
        assert not alive, f"Ray processes still running after shutdown: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def config() -> TradelabConfig:
    return load_config(profile="smoke", overrides={"evaluation.agents": BASELINES,
                                                   "evaluation.start_mode": "random_bar", "evaluation.plots": False})


@pytest.fixture(scope="module")
def market_source(tmp_path_factory: pytest.TempPathFactory, config: TradelabConfig) -> Path:
    """A workspace with two generated markets (different seeds), made once and copied per test."""
    from tradelab.marketdata import generate_market

    root = tmp_path_factory.mktemp("two_markets")
    for seed, market in enumerate(MARKETS, start=7):
        generate_market(root, market, config, days=30, seed=seed)
    return root


def _workspace(source: Path, root: Path, config: TradelabConfig) -> Path:
    """Both markets' bars plus the Stage 1 manifest stub the evaluation needs (as tests/evaluation/conftest.py)."""
    import shutil

    from tradelab.evaluation.holdout import bar_time
    from tradelab.fileio import sha256_file
    from tradelab.manifest import merge_stage1, set_section
    from tradelab.marketdata import load_market_arrays

    for market in MARKETS:
        ws = Workspace.at(root)
        shutil.copytree(Workspace.at(source).data_dir(market), ws.data_dir(market))
        arrays = load_market_arrays(root, market, config)
        set_section(root, market, "data", {
            "bars_path": ws.record(ws.bars_path(market)), "sha256": sha256_file(ws.bars_path(market)),
            "rows": len(arrays), "train_end": bar_time(arrays, arrays.split_index - 1),
            "holdout_start": bar_time(arrays, arrays.split_index),
        })
        merge_stage1(root, market, {"status": "completed", "profile": "smoke"})
    return root


def _comparable(summary: EvaluationSummary) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A report's content without what differs between runs, its trades file, and the manifest summary likewise."""
    report_dir = Path(summary.report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    kept = {k: v for k, v in summary.record().items() if k not in VARYING}
    return {k: v for k, v in report.items() if k not in VARYING}, (report_dir / "trades.jsonl").read_text(), kept


def test_two_markets_two_seeds_on_ray_match_one_by_one(local_ray: Any, market_source: Path, tmp_path: Path,
                                                       config: TradelabConfig) -> None:
    assert {node["NodeManagerAddress"] for node in local_ray.nodes()} == {"127.0.0.1"}
    assert local_ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    one_by_one = _workspace(market_source, tmp_path / "serial", config)
    fanned = _workspace(market_source, tmp_path / "ray", config)

    serial = [stages.evaluate(one_by_one, market, config=config, **RUN_OPTIONS) for market in MARKETS]
    calls: list[tuple[int, int]] = []
    on_ray = stages.evaluate_markets(fanned, list(MARKETS), config=config, ray=LOCAL,
                                     progress=lambda done, total: calls.append((done, total)), **RUN_OPTIONS)

    assert [s.report_dir.split("/reports/")[1].split("/")[0] for s in on_ray] == list(MARKETS)
    for market, expected, got in zip(MARKETS, serial, on_ray):
        want_report, want_trades, want_summary = _comparable(expected)
        got_report, got_trades, got_summary = _comparable(got)
        assert got_report["market"] == market and len(got_report["starts"]) == SEEDS
        assert want_trades and got_trades == want_trades
        assert got_report == want_report
        assert got_summary == want_summary
        manifest_runs = json.loads(Workspace.at(fanned).manifest_path(market).read_text())["evaluation"]
        assert [run["report_dir"] for run in manifest_runs] == [got.report_dir]
    # Every (market, seed) task reported once, and the last report covers every episode.
    assert len(calls) == len(MARKETS) * SEEDS and calls[-1][0] == calls[-1][1]
    assert not (Path(fanned) / FANOUT_DIR).exists()  # task folders are removed once their task finished


def test_errors_in_tasks_come_back_as_our_exceptions(local_ray: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        fan_out(validate_market_name, ["NQ", "../etc"], ray_address=LOCAL)
    with pytest.raises(ConfigError) as here:
        validate_market_name("../etc")
    assert str(caught.value) == str(here.value)
    with pytest.raises(StageFailed, match=r"task 0: unexpected ValueError: invalid literal for int"):
        fan_out(int, ["seven"], ray_address=LOCAL)
    assert fan_out(validate_market_name, ["NQ", "ES"], ray_address=LOCAL) == ["NQ", "ES"]
    # The tasks ran in Ray's worker processes, not in this one.
    where = fan_out(os.path.realpath, ["/proc/self"] * 2, ray_address=LOCAL)
    assert os.path.realpath("/proc/self") not in where


def test_cli_prints_a_task_error_in_one_line_and_exits_2(local_ray: Any, market_source: Path, tmp_path: Path,
                                                         config: TradelabConfig,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = _workspace(market_source, tmp_path / "ws", config)
    (root / FANOUT_DIR).write_text("a file where the task folders go\n")  # only the tasks touch fanout/
    code = main(["--root", str(root), "evaluate", "--market", "NQ,ES", "--episodes", "1", "--seeds", "1",
                 "--adapter", "none", "--ray", "--test"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and FANOUT_DIR in err
    assert "Traceback" not in err
