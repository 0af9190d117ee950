"""Labelled flat bars of the training split: where they come from, what their prompts see and what labels them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradelab.advisor.prompts import build_messages
from tradelab.config import TradelabConfig, load_config
from tradelab.core.tradesim import is_entry_decision
from tradelab.marketdata import load_market_arrays
from tradelab.stage1.hindsight import POOL_FACTOR, HindsightBars, run_pool
from tradelab.stage1.refine import hindsight_example


def test_labelled_bars_are_flat_training_entries_whose_windows_stop_before_the_holdout(
        nq_workspace: Path, config: TradelabConfig) -> None:
    arrays = load_market_arrays(nq_workspace, "NQ", config)
    split = int(arrays.split_index)
    pool = HindsightBars(nq_workspace, "NQ", config, arrays, pool_bars=120, seed=3)
    assert 0 < len(pool) <= 120
    records = pool.draw(40, round_=0)
    assert len(records) == 40 and all(is_entry_decision(r) for r in records)
    horizon = config.env.forward_horizon_bars
    for record in records:
        bar = record["bar_index"]
        assert bar + horizon + 1 < split, "the forward window (the label) stays inside the training split"
        assert record["forward"]["horizon_bars"] == horizon
        np.testing.assert_allclose(record["forward"]["close"], arrays.close[bar + 1:bar + 1 + horizon])
        # The prompt is the advisor's prompt at the bar: built from the env's context there, which ends at the bar.
        assert record["prompt"] == build_messages(record["market_context"], config)
        assert record["market_context"]["bar_index"] == bar and record["advice"] == {}
    # Every bar gets a hindsight label (the best allowed action over its window), with no advisor answer to beat.
    labels = [hindsight_example(r, 0.05) for r in records]
    assert all(label is not None for label in labels)
    assert {label[1].split(" | ")[0] for label in labels} <= {"HOLD", "BUY", "SELL"}
    # A Stage 1 run builds a pool only when refinements add labelled bars, POOL_FACTOR candidates per bar.
    assert run_pool(nq_workspace, "NQ", config, arrays, seed=3) is None  # hindsight_bars: 0 by default
    on = load_config(overrides={"stage1.refinement.hindsight_bars": 10})
    assert 0 < len(run_pool(nq_workspace, "NQ", on, arrays, seed=3)) <= POOL_FACTOR * 10
    # Seeded: the same round draws the same bars; another round draws others.
    assert [r["bar_index"] for r in pool.draw(40, round_=0)] == [r["bar_index"] for r in records]
    assert [r["bar_index"] for r in pool.draw(40, round_=1)] != [r["bar_index"] for r in records]


def test_a_refinement_adds_the_labelled_bars_to_its_examples(monkeypatch: pytest.MonkeyPatch, nq_workspace: Path,
                                                             config: TradelabConfig, tmp_path: Path) -> None:
    from tradelab.advisor import train
    from tradelab.stage1.callbacks import Refiner

    seen: list[list] = []
    monkeypatch.setattr(train, "train_adapter", lambda base, examples, *a, **k: seen.append(list(examples)))
    monkeypatch.setattr(train, "read_training_summary", lambda _: {})
    arrays = load_market_arrays(nq_workspace, "NQ", config)
    pool = HindsightBars(nq_workspace, "NQ", config, arrays, pool_bars=80, seed=0)

    class Recorder:
        recent = pool.draw(10, round_=99)  # stand-ins for this run's resolved entry records

    class Advisor:
        model: object | None = object()

        def release_weights(self) -> None:
            self.model = None

        def set_adapter(self, path: Path) -> None:
            self.path, self.model = path, object()

    cfg = load_config(overrides={"stage1.refinement.decisions": "entries", "stage1.refinement.weights": "uniform"})
    refiner = Refiner(advisor=Advisor(), recorder=Recorder(), config=cfg, base_dir=tmp_path, adapter_path=tmp_path,
                      out_dir=tmp_path, every_steps=1, recent_records=64, min_records=4, epochs=1, seed=0,
                      hindsight=pool, hindsight_bars=25)
    summary = refiner.run(steps=1)
    assert summary["records"] == 10 and summary["hindsight_bars"] == 25 and summary["entry_records"] == 10
    assert len(seen[0]) == 35 and summary["examples"] == 35
