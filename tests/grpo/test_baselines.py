"""What a constant advisor scores on a Stage 2 split (``tradelab.grpo.baselines``)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from stage2_factory import make_record

from tradelab.config import load_config
from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.records import DEFAULT_REWARD_WEIGHTS
from tradelab.core.reward import compute_score
from tradelab.grpo.baselines import (
    constant_answer,
    constant_answers,
    constant_answers_text,
    hindsight_side,
    sides_balanced_mean,
    split_constant_answers,
)
from tradelab.grpo.dataset import export_dataset
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace

SOURCE = "tradelab/NQ"


def _truth(trend: str, **kwargs: object) -> str:
    return dumps(build_ground_truth(make_record(0, trend=trend, **kwargs)))


def test_the_sides_are_counted_where_both_were_allowed_and_a_disallowed_answer_scores_the_penalty() -> None:
    rows = [(SOURCE, _truth("up")), (SOURCE, _truth("up")), (SOURCE, _truth("down")),
            (SOURCE, _truth("up", allowed=["HOLD", "SELL"]))]
    result = constant_answers(rows)
    assert result.rows == 4
    assert (result.buy_better, result.sell_better, result.sides_tied) == (2, 1, 0)
    # The BUY the last row did not allow scores the fixed penalty, below any valid answer's -1.
    buy_scores = [compute_score(SOURCE, "BUY | 0.50 | x", truth)["score"] for _, truth in rows]
    assert buy_scores[-1] == DEFAULT_REWARD_WEIGHTS["invalid_score"]
    assert result.mean_reward["BUY"] == pytest.approx(sum(buy_scores) / 4, abs=1e-4)
    # Two up moves and one down: a constant BUY beats a constant SELL on the rows both may answer.
    up, down = rows[0][1], rows[2][1]
    assert compute_score(SOURCE, "BUY | 0.50 | x", up)["score"] > compute_score(SOURCE, "SELL | 0.50 | x", up)["score"]
    assert compute_score(SOURCE, "SELL | 0.50 | x", down)["score"] > compute_score(SOURCE, "BUY | 0.50 | x",
                                                                                   down)["score"]


def test_an_empty_split_scores_nothing() -> None:
    result = constant_answers([])
    assert result.rows == 0 and result.mean_reward == {"BUY": 0.0, "SELL": 0.0, "HOLD": 0.0}


def test_the_export_records_each_splits_constant_answers_as_read_back_from_its_file(stage2_root) -> None:
    metadata = export_dataset(stage2_root, "NQ", load_config())
    data_dir = Workspace.at(stage2_root).soft_grpo_data_dir("NQ")
    for split in ("train", "val"):
        recorded = metadata["constant_answers"][split]
        assert recorded["rows"] == metadata["counts"][split]
        assert recorded == split_constant_answers(data_dir / f"stage2_{split}.parquet").record()
        rows = pq.read_table(data_dir / f"stage2_{split}.parquet").to_pylist()
        assert recorded == constant_answers(
            [(r["data_source"], r["reward_model"]["ground_truth"]) for r in rows]).record()
    assert load_manifest(stage2_root, "NQ")["stage2"]["dataset"]["constant_answers"] == metadata["constant_answers"]
    line = constant_answers_text(metadata["constant_answers"]["train"])
    assert line.startswith(f"{metadata['counts']['train']} rows") and "BUY beat SELL" in line


def test_each_rows_hindsight_side_agrees_with_the_split_count() -> None:
    rows = [(SOURCE, _truth("up")), (SOURCE, _truth("down")), (SOURCE, _truth("down")),
            (SOURCE, _truth("up", allowed=["HOLD", "SELL"]))]
    sides = [hindsight_side(source, truth) for source, truth in rows]
    assert sides == ["BUY", "SELL", "SELL", None]
    counted = constant_answers(rows)
    assert (sides.count("BUY"), sides.count("SELL")) == (counted.buy_better, counted.sell_better)


def test_the_balanced_mean_removes_a_splits_lean_from_a_constant_side() -> None:
    """9 SELL-won rows and 3 BUY-won ones (plus one blocked): a constant SELL's plain mean is the lean, its balanced
    mean the average of its two kinds of rows, as if the split were even."""
    rows = [(SOURCE, _truth("down"))] * 9 + [(SOURCE, _truth("up"))] * 3 + [(SOURCE, _truth("up", allowed=["HOLD"]))]
    sides = [hindsight_side(source, truth) for source, truth in rows]
    sell = [compute_score(SOURCE, constant_answer("SELL"), truth)["score"] for _, truth in rows]
    on_sell_rows, on_buy_rows, blocked = sell[0], sell[9], sell[12]
    plain = sum(sell) / len(sell)
    balanced = sides_balanced_mean(sell, sides)
    # Each side's 12 rows weigh 6; the blocked row keeps weight 1.
    assert balanced == pytest.approx((6 * on_sell_rows + 6 * on_buy_rows + blocked) / 13)
    assert on_sell_rows > on_buy_rows and plain > balanced
    # A rule that answers each row's winning side is not discounted for being right more often on one side.
    right = [compute_score(SOURCE, constant_answer("SELL" if side == "SELL" else "BUY"), truth)["score"]
             for side, (_, truth) in zip(sides, rows)]
    assert sides_balanced_mean(right, sides) > balanced


def test_the_balanced_mean_is_the_plain_mean_when_one_side_never_won_and_refuses_misaligned_input() -> None:
    assert sides_balanced_mean([0.2, 0.4, -0.3], ["SELL", "SELL", None]) == pytest.approx(0.1)
    assert sides_balanced_mean([1.0, 0.0, 0.0, 0.0], ["BUY", "SELL", "SELL", "SELL"]) == pytest.approx(
        (1.0 * 2.0) / 4)
    with pytest.raises(ValueError, match="3 rewards for 2 sides"):
        sides_balanced_mean([0.1, 0.2, 0.3], ["BUY", "SELL"])
    with pytest.raises(ValueError):
        sides_balanced_mean([], [])
