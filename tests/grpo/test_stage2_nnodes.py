"""Stage 2 across several nodes: ``runner.nnodes`` reaches both engines' commands as ``trainer.nnodes``, and more
than one node needs the Ray cluster's address (``RAY_ADDRESS``) before launch."""

from __future__ import annotations

from pathlib import Path

import pytest
from stage2_factory import fake_soft_grpo_repo, with_overrides

from tradelab.grpo.checks import FAIL, PASS, cluster_check
from tradelab.grpo.engines import base
from tradelab.grpo.runner import build_plan


@pytest.mark.parametrize("engine", ["verl", "soft-grpo"])
def test_runner_nnodes_reaches_the_command(engine: str, stage2_root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(fake_soft_grpo_repo(tmp_path / "repo")))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    plan = build_plan(stage2_root, "NQ", with_overrides(runner__nnodes=3, runner__n_gpus_per_node=4),
                      engine=engine)
    args = base.override_map(plan.overrides)
    assert args["trainer.nnodes"] == "3" and args["trainer.n_gpus_per_node"] == "4"
    assert plan.environment()["RAY_ADDRESS"] == "10.0.0.5:6379"  # the launch joins the cluster the shell names


def test_several_nodes_need_a_ray_address() -> None:
    assert cluster_check(1, {}).status == PASS
    missing = cluster_check(2, {})
    assert missing.status == FAIL and "RAY_ADDRESS" in missing.message
    assert cluster_check(2, {"RAY_ADDRESS": "10.0.0.5:6379"}).status == PASS
