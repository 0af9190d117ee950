"""Stage 2 dataset export: row shape, split, filters, guardrails, hashes, leakage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from stage2_factory import make_record, mixed_records, with_overrides, write_experience

from tradelab.config import load_config
from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import sha256_file
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.rows import row_schema
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace


def _rows(root: Path, split: str) -> list[dict]:
    return pq.read_table(Workspace.at(root).soft_grpo_data_dir("NQ") / f"stage2_{split}.parquet").to_pylist()


def test_rows_follow_the_contract_with_one_schema(stage2_root: Path) -> None:
    export_dataset(stage2_root, "NQ", load_config())
    data_dir = Workspace.at(stage2_root).soft_grpo_data_dir("NQ")
    for split in ("train", "val"):
        table = pq.read_table(data_dir / f"stage2_{split}.parquet")
        assert table.schema.equals(row_schema())
        for i, row in enumerate(table.to_pylist()):
            assert row["data_source"] == "tradelab/NQ" and row["ability"] == "trading"
            assert [m["role"] for m in row["prompt"]] == ["system", "user"]
            assert row["reward_model"]["style"] == "rule"
            truth = json.loads(row["reward_model"]["ground_truth"])
            assert {"forward", "position", "allowed_actions", "contract", "rules", "outcome", "advice"} <= set(truth)
            assert len(truth["forward"]["open"]) == truth["forward"]["horizon_bars"] == 30
            assert row["extra_info"]["split"] == split and row["extra_info"]["index"] == i
            assert row["extra_info"]["market"] == "NQ" and row["extra_info"]["experience_id"].startswith("run1-")
            assert all(v not in ({}, [], None) for v in row.values())


def test_chronological_split_puts_the_latest_rows_in_validation(stage2_root: Path) -> None:
    metadata = export_dataset(stage2_root, "NQ", load_config())
    train, val = _rows(stage2_root, "train"), _rows(stage2_root, "val")
    assert (len(train), len(val)) == (36, 4) == (metadata["counts"]["train"], metadata["counts"]["val"])
    assert max(r["extra_info"]["timestamp"] for r in train) < min(r["extra_info"]["timestamp"] for r in val)


def test_random_split_is_seeded(stage2_root: Path) -> None:
    def val_ids(seed: int) -> list[str]:
        export_dataset(stage2_root, "NQ", with_overrides(dataset__split="random", dataset__seed=seed))
        return [r["extra_info"]["experience_id"] for r in _rows(stage2_root, "val")]

    first, again, other = val_ids(3), val_ids(3), val_ids(4)
    assert first == again and len(first) == 4
    assert first != other
    assert first != [f"run1-{i:07d}" for i in range(36, 40)]


def test_malformed_lines_are_counted_with_line_numbers(tmp_path: Path) -> None:
    write_experience(tmp_path, mixed_records(5), extra_lines=["{not json", '{"id": "x", "outcome": 5}'])
    metadata = export_dataset(tmp_path, "NQ", load_config())
    assert metadata["counts"]["malformed"] == 2
    assert [m["line"] for m in metadata["malformed_lines"]] == [6, 7]
    assert metadata["counts"]["train"] + metadata["counts"]["val"] == 5


@pytest.mark.parametrize("field, value", [
    ("action_taken", "BUY"), ("contract", [1, 2]), ("rules", "none"), ("market_context", 3), ("advice", []),
    ("position", "flat"), ("outcome", "won"), ("prompt", {"role": "user"}), ("forward", None),
])
def test_wrongly_typed_records_are_skipped_and_counted_by_line(tmp_path: Path, field: str, value: object) -> None:
    bad = {**make_record(99), field: value}
    write_experience(tmp_path, [*mixed_records(5), bad])
    metadata = export_dataset(tmp_path, "NQ", load_config())
    assert metadata["counts"]["malformed"] == 1
    assert metadata["malformed_lines"][0]["line"] == 6 and field in metadata["malformed_lines"][0]["error"]
    assert metadata["counts"]["train"] + metadata["counts"]["val"] == 5


def test_wrongly_typed_inner_fields_are_skipped(tmp_path: Path) -> None:
    record = make_record(99)
    record["advice"] = {**record["advice"], "confidence": "high"}
    write_experience(tmp_path, [*mixed_records(3), record])
    metadata = export_dataset(tmp_path, "NQ", load_config())
    assert [(m["line"], "advice.confidence" in m["error"]) for m in metadata["malformed_lines"]] == [(4, True)]


def test_dataset_paths_in_the_manifest_are_workspace_relative(stage2_root: Path) -> None:
    export_dataset(stage2_root, "NQ", load_config())
    paths = load_manifest(stage2_root, "NQ")["stage2"]["dataset"]["paths"]
    assert paths["train"] == "data/soft_grpo/NQ/stage2_train.parquet"
    assert all(not Path(p).is_absolute() for p in paths.values())


def test_empty_forward_windows_are_counted_not_malformed(tmp_path: Path) -> None:
    edge = make_record(9)
    edge["forward"] = {"horizon_bars": 0, "open": [], "high": [], "low": [], "close": [], "atr": 4.0}
    write_experience(tmp_path, [*mixed_records(4), edge])
    metadata = export_dataset(tmp_path, "NQ", load_config())
    assert metadata["counts"]["empty_forward"] == 1 and metadata["counts"]["malformed"] == 0
    assert metadata["counts"]["kept"] == 4


def test_all_lines_malformed_is_fatal_and_names_lines(tmp_path: Path) -> None:
    write_experience(tmp_path, [], extra_lines=["{oops", "[1, 2]"])
    with pytest.raises(DataError, match=r"all 2 lines are malformed.*line 1.*line 2"):
        export_dataset(tmp_path, "NQ", load_config())


def test_no_outcome_guardrail_says_how_to_fix(tmp_path: Path) -> None:
    write_experience(tmp_path, [make_record(i, outcome=False) for i in range(3)])
    with pytest.raises(StageNotReady, match="no experience has an outcome") as info:
        export_dataset(tmp_path, "NQ", load_config())
    assert "Run Stage 1 longer" in str(info.value) and "attaches outcomes" in str(info.value)


def test_missing_experience_file_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(StageNotReady, match="stage1"):
        export_dataset(tmp_path, "NQ", load_config())


def test_filters_removing_everything_print_each_threshold(stage2_root: Path) -> None:
    config = with_overrides(dataset__min_reward=0.9, dataset__include_failures=False)
    with pytest.raises(DataError) as info:
        export_dataset(stage2_root, "NQ", config)
    message = str(info.value)
    assert "dataset.min_reward = 0.9: removed 40" in message
    assert "dataset.include_failures = False" in message and "removed 0" in message
    assert "include_failures: true" in message and "min_reward" in message


def test_filters_count_what_they_remove(stage2_root: Path) -> None:
    metadata = export_dataset(stage2_root, "NQ", with_overrides(dataset__include_failures=False))
    assert metadata["filters"]["include_failures"]["removed"] == 20
    assert metadata["counts"]["kept"] == 20
    metadata = export_dataset(stage2_root, "NQ", with_overrides(dataset__min_reward=0.0, dataset__max_samples=8))
    assert metadata["filters"]["min_reward"]["removed"] == 20
    assert metadata["filters"]["row_cap"]["removed"] == 12
    kept = [r["extra_info"]["experience_id"] for r in _rows(stage2_root, "train") + _rows(stage2_root, "val")]
    assert kept == [f"run1-{i:07d}" for i in range(24, 40) if i % 2]


def test_entries_filter_keeps_only_flat_records_with_both_entries(tmp_path: Path) -> None:
    long = {"side": "long", "entry_price": 18000.0, "stop": 17990.0, "target": 18020.0, "trail_on": False,
            "unrealized_pnl": 5.0, "bars_in_trade": 2}
    records = [make_record(0), make_record(1, position=long, allowed=["HOLD", "MOVE_TO_BE"]),
               make_record(2, allowed=["HOLD", "BUY"]), make_record(3)]
    write_experience(tmp_path, records)
    metadata = export_dataset(tmp_path, "NQ", load_config(overrides={"soft_grpo.dataset.decisions": "entries"}))
    assert metadata["filters"]["decisions"] == {"value": "entries", "removed": 2}
    kept = [r["extra_info"]["experience_id"] for r in _rows(tmp_path, "train") + _rows(tmp_path, "val")]
    assert sorted(kept) == ["run1-0000000", "run1-0000003"]
    assert export_dataset(tmp_path, "NQ", load_config())["filters"]["decisions"]["removed"] == 0


def test_the_smoke_profile_caps_rows_and_the_export_records_its_profile(stage2_root: Path) -> None:
    metadata = export_dataset(stage2_root, "NQ", with_overrides("smoke", dataset__max_samples=10))
    assert metadata["counts"]["train"] + metadata["counts"]["val"] == 10
    assert metadata["profile"] == "smoke" == metadata["origin"]["profile"]
    assert load_manifest(stage2_root, "NQ")["stage2"]["dataset"]["profile"] == "smoke"
    assert export_dataset(stage2_root, "NQ", load_config(profile="smoke"))["counts"]["kept"] == 40  # cap 64


def test_metadata_hashes_match_files_and_manifest(stage2_root: Path) -> None:
    metadata = export_dataset(stage2_root, "NQ", load_config())
    ws = Workspace.at(stage2_root)
    for name, info in metadata["files"].items():
        assert sha256_file(info["path"]) == info["sha256"], name
    assert metadata["source"]["sha256"] == sha256_file(ws.experience_path("NQ"))
    on_disk = json.loads((ws.soft_grpo_data_dir("NQ") / "dataset_metadata.json").read_text())
    assert on_disk["files"] == metadata["files"] and on_disk["schema_version"] == metadata["schema_version"]
    assert on_disk["origin"]["config_hash"]
    recorded = load_manifest(stage2_root, "NQ")["stage2"]["dataset"]
    assert recorded["sha256s"] == {k: v["sha256"] for k, v in metadata["files"].items()}
    assert recorded["counts"] == metadata["counts"]
    samples = (ws.soft_grpo_data_dir("NQ") / "stage2_samples.jsonl").read_text().splitlines()
    assert len(samples) == 40 and json.loads(samples[0])["extra_info"]["index"] == 0


def test_prompts_never_contain_the_forward_window(stage2_root: Path) -> None:
    export_dataset(stage2_root, "NQ", load_config())
    for row in _rows(stage2_root, "train") + _rows(stage2_root, "val"):
        text = " ".join(m["content"] for m in row["prompt"])
        forward = json.loads(row["reward_model"]["ground_truth"])["forward"]
        prices = {p for key in ("open", "high", "low", "close") for p in forward[key]}
        assert not any(f"{p:.2f}" in text or repr(p) in text for p in prices)
        assert "forward" not in text.lower()


def test_export_reports_progress_in_bytes_of_the_experience_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradelab.grpo import export_scan

    path = write_experience(tmp_path, mixed_records(30))
    monkeypatch.setattr(export_scan, "PROGRESS_EVERY_LINES", 10)
    calls: list[tuple[int, int]] = []
    export_dataset(tmp_path, "NQ", load_config(), progress=lambda d, t: calls.append((d, t)))
    size = path.stat().st_size
    assert len(calls) == 4 and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and all(t == size for _, t in calls)


def test_the_blocklist_travels_in_every_rows_ground_truth(stage2_root: Path) -> None:
    from tradelab.core.records import DEFAULT_REWARD_WEIGHTS
    from tradelab.core.reward import compute_score

    INVALID_SCORE = DEFAULT_REWARD_WEIGHTS["invalid_score"]

    export_dataset(stage2_root, "NQ", with_overrides(dataset__blocklist=["http://"]))
    for row in _rows(stage2_root, "train") + _rows(stage2_root, "val"):
        truth = row["reward_model"]["ground_truth"]
        assert json.loads(truth)["reward_spec"]["blocklist"] == ["http://"]
        # Exactly what verl's reward manager calls with the row: the penalty needs no engine-side guard.
        scored = compute_score(row["data_source"], "HOLD | 0.5 | see http://x", truth, row["extra_info"])
        assert scored["score"] == INVALID_SCORE and scored["blocked"] == 1.0


def test_prompts_ask_for_a_reasoning_block_and_stay_point_in_time(stage2_root: Path) -> None:
    config = load_config()
    instruction = config.soft_grpo.dataset.reasoning_instruction
    assert instruction and "<think>" in instruction and "</think>" in instruction
    export_dataset(stage2_root, "NQ", config)
    rows = pq.read_table(Workspace.at(stage2_root).soft_grpo_data_dir("NQ") / "stage2_train.parquet").to_pylist()
    record = mixed_records()[0]
    for row in rows:
        system, user = row["prompt"]
        assert system["content"] == f"{record['prompt'][0]['content']} {instruction}"
        assert user["content"].startswith("NQ ") and "forward" not in user["content"]
        truth = json.loads(row["reward_model"]["ground_truth"])
        assert not any(f"{v:.2f}" in user["content"] for v in truth["forward"]["close"][:5])
    plain = with_overrides(dataset__reasoning_instruction=None)
    export_dataset(stage2_root, "NQ", plain)
    rows = pq.read_table(Workspace.at(stage2_root).soft_grpo_data_dir("NQ") / "stage2_train.parquet").to_pylist()
    assert rows[0]["prompt"][0]["content"] == record["prompt"][0]["content"]


def test_every_prompt_opens_with_a_system_turn(tmp_path: Path) -> None:
    """A record whose prompt has no system message gets the advisor's, so no chat template adds its own default."""
    records = [make_record(i) for i in range(12)]
    for record in records[::2]:
        record["prompt"] = record["prompt"][1:]
    write_experience(tmp_path, records)
    config = load_config(overrides={"soft_grpo.dataset.reasoning_instruction": None})
    export_dataset(tmp_path, "NQ", config)
    rows = _rows(tmp_path, "train") + _rows(tmp_path, "val")
    assert len(rows) == 12 and all([m["role"] for m in row["prompt"]] == ["system", "user"] for row in rows)
    systems = {row["prompt"][0]["content"] for row in rows}
    assert systems == {config.llm.prompts.system, records[1]["prompt"][0]["content"]}


@pytest.mark.slow
def test_smollm2_renders_the_advisors_system_turn_not_its_default(tmp_path: Path, smollm2_dir: Path) -> None:
    """What verl's RLHFDataset does with a row (the tokenizer's chat template with the generation prompt), on
    SmolLM2's template: the advisor's system turn and the reasoning instruction, never "You are ... SmolLM"."""
    from tradelab.advisor.load import load_tokenizer

    records = [make_record(i) for i in range(8)]
    for record in records:
        record["prompt"] = record["prompt"][1:]
    write_experience(tmp_path, records)
    config = load_config()
    export_dataset(tmp_path, "NQ", config)
    tokenizer = load_tokenizer(smollm2_dir)
    instruction = config.soft_grpo.dataset.reasoning_instruction
    for row in _rows(tmp_path, "train"):
        text = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert text.startswith(f"<|im_start|>system\n{config.llm.prompts.system}") and "SmolLM" not in text
        assert instruction and instruction in text and text.endswith("<|im_start|>assistant\n")
        bare = tokenizer.apply_chat_template(row["prompt"][1:], add_generation_prompt=True, tokenize=False)
        assert "SmolLM" in bare  # what the template does to a prompt without a system turn
