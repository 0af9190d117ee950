"""Fixtures for the local engine: a workspace with the tiny advisor, its warm-started adapter as the Stage 1 adapter,
and a Stage 2 dataset exported from experience-like records cut from the generated NQ market.

Records come from the real env (its market contexts and masks at random decision bars) with forward windows sliced
from the same arrays, and go through :func:`tradelab.grpo.dataset.export_dataset`, so the parquet rows and the
reward's ground truth are exactly what Stage 1 + export would produce.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradelab.config import TradelabConfig, load_config

MARKET = "NQ"
N_RECORDS = 120


@pytest.fixture(scope="package", autouse=True)
def _single_thread() -> Any:
    """One torch thread for this package: tiny models on a shared 2-core runner are many times faster this way."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _record(i: int, context: dict[str, Any], config: TradelabConfig, slicer: Any, costs: dict, rules: dict) -> dict:
    from tradelab.advisor.prompts import build_messages

    bar = int(context["bar_index"])
    return {
        "schema_version": 1, "id": f"test-{i:05d}", "market": MARKET, "run_id": "test", "bar_index": bar,
        "timestamp": context["timestamp"], "prompt": build_messages(context, config), "response": "HOLD",
        "advice": {"action": "HOLD", "action_id": 0, "confidence": 0.5, "reason": "", "parse_ok": True,
                   "error": None},
        "action_taken": {"action": "HOLD", "action_id": 0}, "allowed_actions": list(context["allowed_actions"]),
        "position": dict(context["position"]), "account": dict(context["account"]), "market_context": dict(context),
        "forward": slicer.forward(bar), "contract": costs,
        "rules": {**rules, "flatten_after_bars": slicer.flatten_after_bars(bar)},
        "outcome": {"pnl": 0.0, "r_multiple": 0.0, "exit_reason": "no_trade", "bars_held": 0, "reward": 0.0},
        "adapter": None,
    }


def write_experience(market_root: Path, out_root: Path, config: TradelabConfig, *, n_records: int, seed: int) -> Path:
    """Walk the env with random allowed actions and record every few bars; returns the experience file."""
    from tradelab.env import make_env
    from tradelab.env.tables import get_tables
    from tradelab.fileio import append_jsonl
    from tradelab.marketdata import load_market_arrays
    from tradelab.markets import contract_spec
    from tradelab.paths import Workspace
    from tradelab.stage1.experience import ForwardSlicer

    arrays = load_market_arrays(market_root, MARKET, config)
    env = make_env(MARKET, market_root, split="train", seed=seed, config=config, arrays=arrays)
    spec, rules_cfg = contract_spec(config, MARKET), config.env.rules
    tables = get_tables(arrays, window_bars=config.env.window_bars, entry_cutoff=rules_cfg.entry_cutoff,
                        flatten_time=rules_cfg.flatten_time, session_end=spec.session_end)
    slicer = ForwardSlicer(arrays, env.split_bounds[1], config.env.forward_horizon_bars, tables.forced_exit)
    costs = {k: float(getattr(spec, k)) for k in ("tick_size", "tick_value", "point_value", "commission_per_side",
                                                   "slippage_ticks")}
    rules = {"stop_atr": rules_cfg.stop_atr, "target_r": rules_cfg.target_r, "trail_atr": rules_cfg.trail_atr,
             "be_buffer_ticks": rules_cfg.be_buffer_ticks, "flatten_time": rules_cfg.flatten_time}
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    records: list[dict] = []
    while len(records) < n_records:
        context = info["market_context"]
        if rng.random() < 0.25 and slicer.forward(int(context["bar_index"]))["horizon_bars"] > 0:
            records.append(_record(len(records), context, config, slicer, costs, rules))
        allowed = np.flatnonzero(env.action_masks())
        action = int(rng.choice(allowed)) if rng.random() < 0.2 else 0
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            _, info = env.reset()
    path = Workspace.at(out_root).experience_path(MARKET)
    append_jsonl(path, records)
    return path


@pytest.fixture(scope="session")
def grpo_template(
    tmp_path_factory: pytest.TempPathFactory, nq_workspace: Path, tiny_advisor_dir: Path, warm_adapter_dir: Path,
    config: TradelabConfig,
) -> Path:
    """A read-only template root: tiny advisor, warm adapter as stage1_lora, exported Stage 2 dataset."""
    from tradelab.grpo.dataset import export_dataset
    from tradelab.paths import Workspace

    root = tmp_path_factory.mktemp("grpo_local_ws")
    ws = Workspace.at(root)
    shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
    shutil.copytree(warm_adapter_dir, ws.stage1_lora_dir(MARKET))
    write_experience(nq_workspace, root, config, n_records=N_RECORDS, seed=3)
    export_dataset(root, MARKET, config)
    return root


@pytest.fixture
def grpo_root(grpo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template root (tests write run dirs, adapters and manifest entries into it)."""
    root = tmp_path / "ws"
    shutil.copytree(grpo_template, root)
    return root


@pytest.fixture
def local_config() -> Any:
    """Build the config of a run profile (default: the default profile) with ``grpo_local.*`` overrides (dotted keys
    relative to the section)."""

    def build(profile: str | None = None, **overrides: Any) -> TradelabConfig:
        return load_config(profile=profile, overrides={f"grpo_local.{k}": v for k, v in overrides.items()})

    return build
