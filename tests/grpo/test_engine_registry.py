"""The engine registry: one interface per engine, imported downwards, and one plan per run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from stage2_factory import fake_stage1, with_overrides

import tradelab.grpo
from tradelab.config import load_config
from tradelab.errors import ConfigError
from tradelab.grpo import DEFAULT_ENGINE
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine
from tradelab.grpo.engines.launch import ExternalEngine
from tradelab.grpo.engines.registry import ENGINES, get_engine
from tradelab.grpo.runner import run_stage2

ENGINES_DIR = Path(tradelab.grpo.__file__).parent / "engines"
SRC = Path(tradelab.grpo.__file__).parents[1]


def test_every_cli_engine_is_registered_and_unknown_names_list_the_valid_ones() -> None:
    assert tuple(ENGINES) == tradelab.grpo.ENGINES
    assert all(isinstance(engine, Engine) and engine.name == name for name, engine in ENGINES.items())
    with pytest.raises(ConfigError, match="verl, soft-grpo, local"):
        get_engine("trl")


def test_external_engines_plan_under_their_own_name_and_local_has_no_plan(stage2_root: Path) -> None:
    fake_stage1(stage2_root, rank=8)
    config = load_config(profile="smoke")
    for name in ("verl", "soft-grpo"):
        engine = get_engine(name)
        assert isinstance(engine, ExternalEngine)
        assert engine.build_plan(stage2_root, "NQ", config).engine == name
    assert get_engine("soft-grpo").output_kind == "full_model" and get_engine("verl").output_kind == "adapter"
    local = get_engine("local")
    assert not isinstance(local, ExternalEngine) and local.output_kind == "adapter"
    assert local.build_plan(stage2_root, "NQ", config) is None
    assert local.rollout_modes == ("soft", "discrete") and get_engine("verl").rollout_modes == ()


def test_every_engine_runs_through_the_one_interface() -> None:
    for engine in ENGINES.values():
        assert type(engine).run is not Engine.run, f"{engine.name} does not implement Engine.run"
        assert type(engine).launch is not Engine.launch, f"{engine.name} does not implement Engine.launch"
    assert DEFAULT_ENGINE in ENGINES


def _engine_name_comparisons(path: Path) -> list[str]:
    """``x == "verl"``, ``name in ("local", ...)`` and the like: an engine named in a comparison."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            names = {v.value for v in values if isinstance(v, ast.Constant)} & set(ENGINES)
            if names:
                found.append(f"{path.name}:{node.lineno} compares with {sorted(names)}")
    return found


def test_no_engine_name_is_compared_outside_the_engine_modules(tmp_path: Path) -> None:
    found = [hit for path in sorted(SRC.rglob("*.py")) if ENGINES_DIR not in path.parents
             for hit in _engine_name_comparisons(path)]
    assert found == [], "branch on an Engine attribute instead: " + "; ".join(found)
    planted = tmp_path / "planted.py"
    planted.write_text('def f(engine):\n    return engine == "local" or engine in ("verl", "x")\n')
    assert len(_engine_name_comparisons(planted)) == 2, "the scan finds a comparison when there is one"


def test_a_dry_run_builds_the_plan_once_and_preflight_checks_that_plan(
        stage2_root: Path, standin_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = get_engine("verl")
    built: list[base.LaunchPlan] = []
    original = type(engine).build_plan

    def counting(self: Engine, *args: object, **kwargs: object) -> base.LaunchPlan:
        built.append(original(self, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(type(engine), "build_plan", counting)
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    result = run_stage2(stage2_root, "NQ", config, engine="verl", dry_run=True)
    assert len(built) == 1
    assert result.preflight["plan"] == result.launch.plan == built[0].to_dict()


def test_engine_modules_never_import_the_runner_or_preflight() -> None:
    upward = {"tradelab.grpo.runner", "tradelab.grpo.preflight"}
    for path in sorted(ENGINES_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            assert not names & upward, f"{path.name} imports {names & upward}"
