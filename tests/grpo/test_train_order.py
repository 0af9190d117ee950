"""The train file's row order for engines that read it in order (``soft_grpo.dataset.train_order``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from stage2_factory import fake_stage1, make_record, with_overrides, write_experience

from tradelab.grpo.baselines import hindsight_side
from tradelab.grpo.config_checks import train_order_check
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.engines.registry import get_engine
from tradelab.grpo.train_order import sides_balanced_order, time_order
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace


def _sides(n_buy: int, n_sell: int, n_other: int, seed: int = 0) -> list[str | None]:
    sides: list[str | None] = ["BUY"] * n_buy + ["SELL"] * n_sell + [None, "tied"] * (n_other // 2)
    sides += [None] * (n_other % 2)
    return [sides[i] for i in np.random.default_rng(seed).permutation(len(sides))]


def _worst_prefix_gap(labels: list[str | None]) -> int:
    gap = worst = 0
    for side in labels:
        gap += (side == "BUY") - (side == "SELL")
        worst = max(worst, abs(gap))
    return worst


@pytest.mark.parametrize(("n_buy", "n_sell", "n_other"), [(30, 10, 7), (5, 40, 0), (12, 12, 12), (1, 9, 3)])
def test_every_prefix_holds_the_sides_within_one_row_and_every_row_is_written(n_buy: int, n_sell: int,
                                                                               n_other: int) -> None:
    sides = _sides(n_buy, n_sell, n_other)
    positions, tally = sides_balanced_order(sides, seed=3)
    written = [sides[p] for p in positions]
    assert _worst_prefix_gap(written) <= 1
    assert set(positions.tolist()) == set(range(len(sides)))  # nothing dropped
    per_side = max(n_buy, n_sell)
    counts = Counter(side if side in ("BUY", "SELL") else "other" for side in written)
    assert counts == Counter({"BUY": per_side, "SELL": per_side, "other": n_other}) - Counter()
    # The smaller side is repeated in whole passes: no row of it twice before every row of it once.
    small = "BUY" if n_buy < n_sell else "SELL"
    seen = [p for p in positions.tolist() if sides[p] == small]
    first_pass = seen[:min(n_buy, n_sell)]
    assert sorted(first_pass) == sorted(i for i, s in enumerate(sides) if s == small)
    # The others are spread through the file, not bunched: each half holds about half of them.
    if n_other >= 6:
        half = len(written) // 2
        in_first_half = sum(side not in ("BUY", "SELL") for side in written[:half])
        assert abs(in_first_half - n_other / 2) <= 1
    assert (tally.rows, tally.repeated_rows, tally.seed) == (len(positions), len(positions) - len(sides), 3)


def test_the_order_is_seeded_and_without_a_side_every_row_is_shuffled_once() -> None:
    sides = _sides(20, 8, 4)
    assert np.array_equal(sides_balanced_order(sides, 5)[0], sides_balanced_order(sides, 5)[0])
    assert not np.array_equal(sides_balanced_order(sides, 5)[0], sides_balanced_order(sides, 6)[0])
    one_sided = ["BUY"] * 6 + [None] * 3
    positions, tally = sides_balanced_order(one_sided, 5)
    assert sorted(positions.tolist()) == list(range(9)) and positions.tolist() != list(range(9))
    assert tally.repeated_rows == 0
    kept, plain = time_order(len(sides))
    assert kept.tolist() == list(range(len(sides))) and plain.value == "time" and plain.seed is None


def _leaning_root(tmp_path: Path) -> Path:
    """A workspace whose 60 records went up twice as often as down (the split leans BUY)."""
    root = tmp_path / "ws"
    write_experience(root, [make_record(i, trend=("up", "up", "down", "flat")[i % 4]) for i in range(60)])
    fake_stage1(root)
    return root


def _file_sides(path: Path) -> list[str | None]:
    rows = pq.read_table(path).to_pylist()
    return [hindsight_side(r["data_source"], r["reward_model"]["ground_truth"]) for r in rows]


def test_the_export_writes_the_train_rows_balanced_and_records_how(tmp_path: Path) -> None:
    root = _leaning_root(tmp_path)
    data_dir = Workspace.at(root).soft_grpo_data_dir("NQ")
    plain = export_dataset(root, "NQ", with_overrides("smoke", dataset__max_samples=None))
    time_rows = pq.read_table(data_dir / "stage2_train.parquet").to_pylist()
    time_val = (data_dir / "stage2_val.parquet").read_bytes()
    time_sides = _file_sides(data_dir / "stage2_train.parquet")
    assert time_sides.count("BUY") > time_sides.count("SELL") + 5  # the split leans
    assert plain["train_order"]["value"] == "time" and plain["train_order"]["repeated_rows"] == 0

    balanced = export_dataset(root, "NQ", with_overrides("smoke", dataset__max_samples=None,
                                                         dataset__train_order="sides_balanced"))
    rows = pq.read_table(data_dir / "stage2_train.parquet").to_pylist()
    sides = _file_sides(data_dir / "stage2_train.parquet")
    assert _worst_prefix_gap(sides) <= 1 and _worst_prefix_gap(time_sides) > 5
    assert sides.count("BUY") == sides.count("SELL") == time_sides.count("BUY")
    # The same experiences (each at least once), positions renumbered, the validation file untouched.
    assert {r["extra_info"]["experience_id"] for r in rows} == {r["extra_info"]["experience_id"] for r in time_rows}
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
    assert (data_dir / "stage2_val.parquet").read_bytes() == time_val
    order = balanced["train_order"]
    assert order["rows"] == len(rows) == balanced["counts"]["train"]
    assert order["repeated_rows"] == len(rows) - len(time_rows) == time_sides.count("BUY") - time_sides.count("SELL")
    # The split's lean is still reported on its distinct rows.
    assert balanced["constant_answers"]["train"] == plain["constant_answers"]["train"]
    assert load_manifest(root, "NQ")["stage2"]["dataset"]["train_order"] == order


@pytest.mark.parametrize("engine", ["verl", "soft-grpo"])
def test_the_plans_read_a_balanced_file_in_order_and_the_check_catches_a_shuffle(stage2_root: Path,
                                                                                engine: str) -> None:
    config = with_overrides("smoke", dataset__train_order="sides_balanced")
    plan = get_engine(engine).build_plan(stage2_root, "NQ", config)
    assert "data.shuffle=False" in plan.overrides and plan.argv.count("data.shuffle=False") == 1
    assert "data.shuffle=False" not in get_engine(engine).build_plan(stage2_root, "NQ", with_overrides("smoke")).argv
    # An explicit override still wins, and preflight's rule then fails the launch.
    shuffled = get_engine(engine).build_plan(stage2_root, "NQ", config, extra_overrides=["data.shuffle=True"])
    assert "data.shuffle=True" in shuffled.overrides and "data.shuffle=False" not in shuffled.overrides


def test_the_train_order_check_names_each_mismatch() -> None:
    assert train_order_check({"data.shuffle": False}, "sides_balanced", "sides_balanced").status == "pass"
    assert train_order_check({}, None, "time").status == "pass"  # verl's default shuffles
    failed = train_order_check({}, "sides_balanced", "sides_balanced")
    assert failed.status == "fail" and "data.shuffle" in failed.message
    stale = train_order_check({"data.shuffle": False}, "time", "sides_balanced")
    assert stale.status == "warn" and "--dataset-only" in stale.message
    drifting = train_order_check({"data.shuffle": False}, "time", "time")
    assert drifting.status == "warn" and "drift" in drifting.message


def test_data_shuffle_is_the_train_sampler_switch_in_both_verls() -> None:
    """The key the plans set is read where each verl builds its train sampler (SequentialSampler when false)."""
    import inspect

    import verl
    import yaml
    from verl.trainer.ppo.utils import create_rl_sampler

    generated = yaml.safe_load((Path(verl.__file__).parent / "trainer/config/_generated_ppo_trainer.yaml").read_text())
    assert generated["data"]["shuffle"] is True
    assert "if data_config.shuffle:" in inspect.getsource(create_rl_sampler)
    upstream = next((p / "shared" / "upstream" / "SofT-GRPO" / "verl-0.4.x" for p in Path(__file__).resolve().parents
                     if (p / "shared" / "upstream" / "SofT-GRPO" / "verl-0.4.x").is_dir()), None)
    assert upstream is not None, "shared/upstream/SofT-GRPO is not beside the checkout"
    fork = yaml.safe_load((upstream / "verl/trainer/config/ppo_trainer.yaml").read_text())
    assert fork["data"]["shuffle"] is True
    sampler = (upstream / "verl/trainer/main_ppo.py").read_text()
    assert "if data_config.shuffle:" in sampler and "SequentialSampler(data_source=dataset)" in sampler
