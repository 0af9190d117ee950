"""The loop end to end with every real stage: it learns on a strong planted edge and finds nothing on the null market.

Both runs use the CLI's own ``stages.loop`` in test mode on 40 generated sessions, with the session's tiny advisor and
warm adapter copied into the workspace (the warm start is the same function the loop would call).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tradelab import stages
from tradelab.config import TradelabConfig, load_config
from tradelab.loop import TINY_ADVISOR_LEARNING
from tradelab.paths import Workspace
from tradelab.stage1.setup import WARM_ADAPTER_DIR

STRONG_EDGE = 0.6
"""Follow-the-5-bar-return wins about 69% of 30-bar directions at this strength (README, bench/learning.py)."""



def _workspace(root: Path, edge: float, config: TradelabConfig, tiny_advisor_dir: Path, warm_adapter_dir: Path) -> Path:
    ws = Workspace.at(root)
    stages.generate_data(root, "NQ", days=40, seed=7, edge=edge, config=config)
    shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
    shutil.copytree(warm_adapter_dir, ws.market_model_dir("NQ") / WARM_ADAPTER_DIR)
    return root


def _loop(root: Path) -> dict[str, Any]:
    config = load_config(overrides=TINY_ADVISOR_LEARNING)
    return stages.loop(root, "NQ", iterations=1, test_mode=True, seeds=2, probe_prompts=96, config=config)["report"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_loop_on_a_strong_edge_learns_and_trades(
    tmp_path: Path, config: TradelabConfig, tiny_advisor_dir: Path, warm_adapter_dir: Path,
) -> None:
    root = _workspace(tmp_path, STRONG_EDGE, config, tiny_advisor_dir, warm_adapter_dir)
    report = _loop(root)
    warm = report["warm_start"]["advisor"]
    final = report["iterations"][-1]["advisor"]
    assert report["edge"] == STRONG_EDGE
    assert warm["hit_rate"] is not None and final["hit_rate"] is not None
    assert final["hit_rate"] > warm["hit_rate"], (warm, final)
    assert report["iterations"][-1]["agents"]["hybrid"]["trades"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_null_market_shows_no_edge(
    tmp_path: Path, config: TradelabConfig, tiny_advisor_dir: Path, warm_adapter_dir: Path,
) -> None:
    root = _workspace(tmp_path, 0.0, config, tiny_advisor_dir, warm_adapter_dir)
    report = _loop(root)
    assert report["edge"] == 0.0
    last = report["iterations"][-1]
    for name, agent in last["agents"].items():
        interval = agent["net_pnl_usd_ci"]
        assert interval is None or interval[0] <= 0.0, f"{name} shows an edge on the null market: {interval}"
    for advisor in (report["warm_start"]["advisor"], last["advisor"]):
        interval = advisor["hit_rate_ci"]
        assert interval is None or interval[0] <= 0.5 <= interval[1], advisor
