"""Model loading: local directories only, clear errors for missing weights, automatic dtype, adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradelab.advisor.load import (
    load_advisor_model,
    resolve_adapter_dir,
    resolve_device,
    resolve_dtype,
    resolve_model_dir,
)
from tradelab.config import TradelabConfig, load_config
from tradelab.errors import ConfigError, MissingDependency


def test_missing_directory_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(MissingDependency) as err:
        resolve_model_dir("models/base/real-llm", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "models/base/real-llm") in message and "config.json" in message
    assert "llm.model" in message


def test_uncached_hub_id_is_missing_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingDependency, match="local cache"):
        resolve_model_dir("no-such-org/no-such-model-xyz", tmp_path)


def test_hub_id_resolves_from_local_cache(tmp_path: Path, tiny_advisor_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id found in the local cache loads offline (a hand-made cache entry stands in for a download)."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in tiny_advisor_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (cache / "models--acme--tiny" / "refs").mkdir()
    (cache / "models--acme--tiny" / "refs" / "main").write_text("0" * 40)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_dir("acme/tiny", tmp_path) == snapshot


def test_default_model_is_built_on_first_use(advisor_root: Path, tiny_advisor_dir: Path) -> None:
    assert resolve_model_dir("models/base/tiny-advisor", advisor_root) == tiny_advisor_dir
    assert resolve_model_dir(str(tiny_advisor_dir), advisor_root) == tiny_advisor_dir


def test_dtype_and_device_auto() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


def test_quantisation_needs_cuda(advisor_root: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    cfg = load_config(overrides={"llm.load_in_4bit": True})
    with pytest.raises(ConfigError, match="load_in_4bit"):
        load_advisor_model(cfg, advisor_root)
    with pytest.raises(ConfigError):
        load_config(overrides={"llm.load_in_4bit": True, "llm.load_in_8bit": True})


def test_loads_base_for_inference(advisor_root: Path, config: TradelabConfig) -> None:
    import torch

    loaded = load_advisor_model(config, advisor_root)
    assert not loaded.model.training
    assert loaded.dtype == "float32" and next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.smoke_test_model and loaded.adapter_path is None
    assert not config.llm.trust_remote_code


def test_adapter_applied_and_missing_adapter_error(advisor_root: Path, warm_adapter_dir: Path,
                                                   config: TradelabConfig) -> None:
    from peft import PeftModel

    loaded = load_advisor_model(config, advisor_root, adapter_path=warm_adapter_dir)
    assert isinstance(loaded.model, PeftModel) and loaded.adapter_path == warm_adapter_dir
    cfg = load_config(overrides={"llm.adapter_path": "models/nowhere"})
    with pytest.raises(MissingDependency, match="adapter_config.json"):
        load_advisor_model(cfg, advisor_root)
    with pytest.raises(MissingDependency):
        resolve_adapter_dir("models/nowhere", advisor_root)
