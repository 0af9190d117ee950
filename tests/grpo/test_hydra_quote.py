"""Hydra overrides carry workspace paths literally, whatever characters the path has (checked with Hydra itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from stage2_factory import fake_stage1, mixed_records, write_experience

from tradelab.config import load_config
from tradelab.grpo.engines import base
from tradelab.grpo.hydra_quote import hydra_quote
from tradelab.grpo.runner import build_plan


def _as_hydra_reads_it(override: str) -> object:
    """The value verl ends up with: Hydra's override parser, then OmegaConf's resolution."""
    value = OverridesParser.create().parse_override(override).value()
    return OmegaConf.create({"v": value}).v


@pytest.mark.parametrize("value", [
    "/ws/a,b/c", "/ws/x=y", "/ws/${oc.env:HOME}/z", "/ws/it's", "/ws/sp ace/[1]{2}", "/ws/end\\", "C:\\data\\",
    "/ws/q\\'x", "/ws/w\\${x}", "plain/path-1.2_3",
])
def test_quoted_values_reach_hydra_unchanged(value: str) -> None:
    assert _as_hydra_reads_it(f"data.train_files={hydra_quote(value)}") == value


def test_plain_values_stay_unquoted() -> None:
    assert hydra_quote("/work/ws/data/soft_grpo/NQ/stage2_train.parquet") == \
        "/work/ws/data/soft_grpo/NQ/stage2_train.parquet"


@pytest.mark.parametrize("folder", ["ws,comma", "ws=equals", "ws ${oc.env:HOME}"])
def test_a_workspace_path_with_hydra_syntax_makes_a_literal_launch(tmp_path: Path, folder: str) -> None:
    root = tmp_path / folder
    write_experience(root, mixed_records(4))
    fake_stage1(root)
    plan = build_plan(root, "NQ", load_config(profile="smoke"), engine="verl")
    values = {base.override_key(o): o for o in plan.overrides}
    train = values["data.train_files"]
    assert _as_hydra_reads_it(train) == str(root.resolve() / "data/soft_grpo/NQ/stage2_train.parquet")
    assert plan.env_overrides["TENSORBOARD_DIR"].startswith(str(root.resolve())), "env values are not quoted"
