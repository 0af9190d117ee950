"""``tradelab.fanout`` without Ray (the serial map, error records), ``tradelab.taskspace`` (task workspaces,
adopting a market), and the ``--market A,B|all`` and ``--ray [ADDRESS]`` flags. The Ray path itself is in
``test_fanout_ray.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tradelab import stages
from tradelab.cli.parser import build_parser
from tradelab.errors import ConfigError, DataError, StageFailed, StageNotReady, WorkspaceError
from tradelab.fanout import LOCAL, _guarded, _rebuilt_error, fan_out
from tradelab.loop import api as loop_api
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.taskspace import (
    FANOUT_DIR,
    adopt_market,
    copy_market,
    link_market,
    rebase_paths,
    remove_worker_workspace,
    worker_workspace,
)


def test_serial_map_keeps_order_reports_each_and_lets_errors_through() -> None:
    seen: list[tuple[int, str]] = []
    assert fan_out(str.upper, ["nq", "es"], on_done=lambda i, r: seen.append((i, r))) == ["NQ", "ES"]
    assert seen == [(0, "NQ"), (1, "ES")]
    with pytest.raises(ConfigError, match="not a valid market name|market name"):
        fan_out(validate_market_name, ["NQ", "../x"])  # the very exception, not a wrapped one


def test_task_errors_travel_as_records_and_come_back_as_the_same_class() -> None:
    assert _guarded(validate_market_name, "NQ") == ("ok", "NQ")
    kind, name, message, code = _guarded(validate_market_name, "../x")
    assert (kind, name, code) == ("error", "ConfigError", 2)
    rebuilt = _rebuilt_error("task 3", name, message, code)
    assert type(rebuilt) is ConfigError and str(rebuilt) == message
    assert type(_rebuilt_error("t", "DataError", "bad file", 2)) is DataError
    failed = _rebuilt_error("task 3", *_guarded(int, "seven")[1:])
    assert type(failed) is StageFailed and failed.exit_code == 1
    assert str(failed).startswith("task 3: unexpected ValueError: invalid literal for int()")
    custom = _rebuilt_error("t", "StageNotReady", "later", 1)  # an exit code set on the instance survives
    assert type(custom) is StageNotReady and custom.exit_code == 1


def _parent(tmp_path: Path) -> Path:
    root = tmp_path / "parent"
    ws = Workspace.at(root)
    ws.data_dir("NQ").mkdir(parents=True)
    ws.bars_path("NQ").write_bytes(b"bars")
    ws.market_model_dir("NQ").mkdir(parents=True)
    ws.manifest_path("NQ").write_text('{"old": true}')
    (ws.root / "models" / "base" / "tiny-advisor").mkdir(parents=True)
    return root


def test_task_workspaces_link_or_copy_the_market_and_go_away(tmp_path: Path) -> None:
    parent = _parent(tmp_path)
    reader = worker_workspace(parent, "run1", "NQ_seed0")
    assert reader == Workspace.at(parent).root / FANOUT_DIR / "run1" / "NQ_seed0"
    link_market(parent, reader, "NQ")
    assert Workspace.at(reader).bars_path("NQ").read_bytes() == b"bars"
    assert Workspace.at(reader).data_dir("NQ").is_symlink()
    writer = worker_workspace(parent, "run1", "NQ")
    copy_market(parent, writer, "NQ")
    ws = Workspace.at(writer)
    assert not ws.data_dir("NQ").is_symlink() and not ws.market_model_dir("NQ").is_symlink()
    assert (ws.root / "models" / "base").is_symlink()  # base models are read only: linked
    ws.manifest_path("NQ").write_text("{}")
    assert Workspace.at(parent).manifest_path("NQ").read_text() == '{"old": true}'  # a copy, not the parent's
    remove_worker_workspace(reader)
    remove_worker_workspace(writer)
    assert not (Workspace.at(parent).root / FANOUT_DIR).exists()
    assert Workspace.at(parent).bars_path("NQ").read_bytes() == b"bars"  # links removed, never followed


def test_a_task_folder_that_cannot_be_made_is_a_workspace_error(tmp_path: Path) -> None:
    parent = _parent(tmp_path)
    (parent / FANOUT_DIR).write_text("not a folder")
    with pytest.raises(WorkspaceError, match=rf"{FANOUT_DIR}: cannot create the task folder"):
        worker_workspace(parent, "run1", "NQ")
    with pytest.raises(WorkspaceError, match="not visible"):
        worker_workspace(tmp_path / "elsewhere", "run1", "NQ")


def test_adopting_a_market_moves_its_outputs_in_and_rebases_recorded_paths(tmp_path: Path) -> None:
    parent = _parent(tmp_path)
    worker = worker_workspace(parent, "run1", "NQ")
    copy_market(parent, worker, "NQ")
    ws = Workspace.at(worker)
    report = ws.reports_dir("NQ") / "loop_20260101T000000Z"
    report.mkdir(parents=True)
    (report / "loop_report.json").write_text(json.dumps({"answers": str(report / "answers"), "note": "keep"}))
    (ws.market_model_dir("NQ") / "stage1_lora").mkdir()
    (ws.market_model_dir("NQ") / "stage1_lora" / "adapter_config.json").write_text(
        json.dumps({"base": str(ws.root / "models")}))  # model files are hashed: left as they are
    ws.manifest_path("NQ").write_text(json.dumps({"evaluation": [{"report_dir": str(report)}],
                                                  "loop": {"report_dir": "reports/NQ/loop_20260101T000000Z"}}))
    ws.soft_grpo_log_dir().mkdir(parents=True)
    (ws.soft_grpo_log_dir() / "NQ_20260101T000000Z.log").write_text("engine output")
    (ws.soft_grpo_log_dir() / "ES_20260101T000000Z.log").write_text("another market's")
    (ws.root / "models" / "base").unlink()  # as if the parent had no base model and the task built one
    (ws.root / "models" / "base" / "tiny-advisor").mkdir(parents=True)
    (ws.root / "models" / "base" / "tiny-advisor" / "config.json").write_text("{}")
    (ws.root / "models" / "base" / "qwen").mkdir()
    moved = adopt_market(worker, parent, "NQ")
    remove_worker_workspace(worker)

    home = Workspace.at(parent)
    assert home.market_model_dir("NQ") in moved and home.reports_dir("NQ") / report.name in moved
    manifest = json.loads(home.manifest_path("NQ").read_text())
    assert manifest["evaluation"][0]["report_dir"] == str(home.reports_dir("NQ") / report.name)
    assert manifest["loop"]["report_dir"] == "reports/NQ/loop_20260101T000000Z"
    loop_report = json.loads((home.reports_dir("NQ") / report.name / "loop_report.json").read_text())
    assert loop_report == {"answers": str(home.reports_dir("NQ") / report.name / "answers"), "note": "keep"}
    adapter = json.loads((home.stage1_lora_dir("NQ") / "adapter_config.json").read_text())
    assert adapter == {"base": str(ws.root / "models")}
    assert not (home.root / FANOUT_DIR).exists()
    assert not list(home.market_model_dir("NQ").parent.glob(".*replaced"))
    assert [p.name for p in home.soft_grpo_log_dir().iterdir()] == ["NQ_20260101T000000Z.log"]
    assert home.root / "models" / "base" / "qwen" in moved  # a base model the parent lacked
    assert not (home.root / "models" / "base" / "tiny-advisor" / "config.json").exists()  # the parent's stays


def test_rebase_paths_only_touches_paths_under_the_folder() -> None:
    data = {"a": "/w/fanout/r/NQ/reports/x", "b": ["/w/fanout/r/NQX", "/w/fanout/r/NQ"], "c": 3}
    assert rebase_paths(data, "/w/fanout/r/NQ", "/w") == {"a": "/w/reports/x", "b": ["/w/fanout/r/NQX", "/w"],
                                                            "c": 3}


def test_market_lists(tmp_path: Path) -> None:
    parent = _parent(tmp_path)
    assert stages.parse_markets(parent, "NQ") == ["NQ"]
    assert stages.parse_markets(parent, "NQ, ES,NQ") == ["NQ", "ES"]
    assert stages.parse_markets(parent, "all") == ["NQ"]
    with pytest.raises(ConfigError):
        stages.parse_markets(parent, "NQ,es")
    with pytest.raises(ConfigError, match="name a market"):
        stages.parse_markets(parent, " , ")
    with pytest.raises(StageNotReady, match="no market has bars"):
        stages.parse_markets(tmp_path / "empty", "all")


@pytest.mark.parametrize("command", ["evaluate", "loop"])
def test_ray_flag(command: str) -> None:
    base = [command, "--market", "NQ,ES"] + (["--iterations", "1"] if command == "loop" else [])
    parser = build_parser()
    assert parser.parse_args(base).ray is None
    assert parser.parse_args([*base, "--ray"]).ray == LOCAL
    assert parser.parse_args([*base, "--ray", "10.1.2.3:6379"]).ray == "10.1.2.3:6379"
    assert parser.parse_args(base).market == "NQ,ES"


def test_no_ray_import_without_ray(tmp_path: Path) -> None:
    """Importing the fan-out module and running serially never imports Ray."""
    import subprocess
    import sys

    code = ("import sys; from tradelab.fanout import fan_out; fan_out(abs, [-1]); "
            "import tradelab.evaluation.parallel, tradelab.loop.parallel, tradelab.stages; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout.strip()
    assert out == "False"


def test_loop_evaluations_get_the_ray_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelab.config import load_config
    from tradelab.loop import report as loop_report
    from tradelab.loop import run as loop_run
    from tradelab.manifest_schema import EvaluationSummary, LoopIteration, LoopSettings

    seen: dict[str, object] = {}

    def evaluate(root: object, market: str, **kwargs: object) -> EvaluationSummary:
        seen.update(kwargs)
        return EvaluationSummary(report_dir=str(tmp_path / "reports" / market / "r1"))

    monkeypatch.setattr(stages, "evaluate", evaluate)
    monkeypatch.setattr(loop_report, "agents_from_report",
                        lambda path, level, seed: {"agents": {}, "hybrid_minus_ppo": None, "identical": [],
                                                     "base_model": None})
    settings = LoopSettings(iterations=1, engine="local", seeds=2, profile="smoke", probe_prompts=4)
    iteration = LoopIteration(iteration=1)
    loop_run._evaluation(tmp_path, "NQ", load_config(), settings, None, iteration, None, None, ray_address="h:6379")
    assert seen["ray"] == "h:6379" and seen["seeds"] == 2
    assert iteration.evaluation is not None and iteration.evaluation.record() == {
        "report_dir": "reports/NQ/r1", "agents": {}, "hybrid_minus_ppo": None, "identical": [], "base_model": None}


def test_several_markets_without_ray_loop_one_after_another_here(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelab.config import load_config
    from tradelab.loop import parallel

    calls: list[tuple[str, object]] = []

    def run_loop(root: object, market: str, config: object, settings: object, **kwargs: object) -> dict[str, str]:
        calls.append((market, kwargs["ray_address"]))
        kwargs["on_event"]("stage1")  # type: ignore[operator]
        return {"market": market}

    monkeypatch.setattr(parallel, "run_loop", run_loop)
    events: list[str] = []
    results = loop_api.loop_markets(_parent(tmp_path), ["NQ", "ES"], iterations=1, on_event=events.append,
                                    config=load_config(profile="smoke"))
    assert results == [{"market": "NQ"}, {"market": "ES"}]
    assert calls == [("NQ", None), ("ES", None)] and events == ["NQ: stage1", "ES: stage1"]


def test_task_logging_writes_the_parent_log_with_the_task_named(tmp_path: Path) -> None:
    import logging

    from tradelab.taskspace import task_logging

    parent = _parent(tmp_path)
    with pytest.raises(DataError), task_logging(parent, "evaluate NQ seed 3"):
        logging.getLogger("tradelab.evaluation.run").info("seed started")
        raise DataError("bad bars")
    logging.getLogger("tradelab.evaluation.run").info("after the task")
    text = Workspace.at(parent).app_log().read_text()
    assert "[evaluate NQ seed 3]: seed started" in text and "DataError: bad bars" in text
    assert "after the task" not in text
