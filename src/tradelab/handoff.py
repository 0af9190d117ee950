"""What one stage hands the next: the advisor's weights, as a base model and an optional LoRA adapter.

Stage 1 leaves an adapter on its base (``stage1_lora`` on ``stage1.base_model``). A Stage 2 run leaves either an
adapter (the local engine and verl train LoRA) or a whole model (the SofT-GRPO fork trains every weight); its
:class:`~tradelab.manifest_schema.RunOutput` says which. This module turns those records into an
:class:`AdvisorModel` that evaluation, the loop's probe and the next Stage 1 load the same way, and prepares what a
Stage 1 needs to start from a whole model: a stable copy of it as the new base and a fresh adapter on top.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import StageNotReady
from tradelab.manifest_schema import RunOutput, stage1_of, stage2_of
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

log = logging.getLogger(__name__)

STAGE2_BASES_DIR = "stage2_bases"
"""Folder under ``models/phase3_hybrid/<MKT>/`` holding whole models Stage 2 handed back, one per sha256, once a
Stage 1 starts from them (``soft_grpo/hf_model/`` is replaced by the next run; the copy a Stage 1 trained on is not)."""
FRESH_ADAPTER_DIR = "stage1_fresh_lora"
"""Folder under ``models/phase3_hybrid/<MKT>/`` holding the untrained adapter a Stage 1 starts with on a new base."""


@dataclass(frozen=True)
class AdvisorModel:
    """The advisor's weights.

    Attributes:
        base: The base model folder; None is the configured ``llm.model``.
        adapter: A LoRA adapter folder on ``base``; None loads the base alone (a whole model from Stage 2), or, for a
            Stage 1 start, gives it a fresh adapter.
    """

    base: Path | None
    adapter: Path | None

    def config_for(self, config: TradelabConfig) -> TradelabConfig:
        """``config`` whose ``llm.model`` / ``llm.adapter_path`` load exactly these weights."""
        update: dict[str, Any] = {"adapter_path": str(self.adapter) if self.adapter is not None else None}
        if self.base is not None:
            update["model"] = str(self.base)
        return config.model_copy(update={"llm": config.llm.model_copy(update=update)})

    def describe(self) -> str:
        """One line for messages: the base (when not the configured one) and the adapter."""
        base = f"base {self.base}" if self.base is not None else "the configured base"
        return f"{base} + adapter {self.adapter}" if self.adapter is not None else f"{base} alone"


def adapter_folder(adapter: str | Path) -> Path:
    """A PEFT adapter folder given on the command line, resolved.

    Raises:
        StageNotReady: The folder has no ``adapter_config.json``.
    """
    path = Path(adapter).expanduser().resolve()
    if not (path / "adapter_config.json").is_file():
        raise StageNotReady(f"{path}: no LoRA adapter there (adapter_config.json missing); pass a PEFT adapter "
                            "folder (adapter_config.json + weights)")
    return path


def _configured_base(ws: Workspace, config: TradelabConfig) -> Path:
    path = Path(config.llm.model).expanduser()
    return (path if path.is_absolute() else ws.root / path).resolve()


def base_or_none(ws: Workspace, config: TradelabConfig, recorded: str | None) -> Path | None:
    """A recorded base folder, or None when it is the configured model (so the config is used unchanged)."""
    path = ws.resolve(recorded)
    if path is None or path.resolve() == _configured_base(ws, config):
        return None
    return path


def stage1_model(root: str | Path, market: str, manifest: dict[str, Any] | None,
                 config: TradelabConfig) -> AdvisorModel | None:
    """Stage 1's advisor: its recorded base with ``stage1_lora`` (None when no Stage 1 adapter exists)."""
    ws = Workspace.at(root)
    stage1 = stage1_of(manifest)
    recorded = stage1.lora_adapter_path if stage1 is not None else None
    adapter = ws.resolve(recorded) or ws.stage1_lora_dir(market)
    if not (adapter / "adapter_config.json").is_file():
        return None
    base = stage1.base_model.local_path if stage1 is not None and stage1.base_model is not None else None
    return AdvisorModel(base_or_none(ws, config, base), adapter)


def stage2_output(root: str | Path, market: str, manifest: dict[str, Any] | None) -> RunOutput | None:
    """What the last completed Stage 2 run left, or None.

    A workspace without such a run but with an adapter at ``soft_grpo/adapter/`` (placed by hand, or written before
    runs recorded their output) gives that adapter, applied to Stage 1's base.
    """
    found = stage2_of(manifest).last_output()
    if found is not None:
        return found
    ws = Workspace.at(root)
    adapter = ws.soft_grpo_adapter_dir(market)
    if (adapter / "adapter_config.json").is_file():
        return RunOutput(kind="adapter", path=ws.record(adapter) or str(adapter))
    return None


def stage2_model(root: str | Path, market: str, manifest: dict[str, Any] | None,
                 config: TradelabConfig) -> AdvisorModel | None:
    """The advisor the last Stage 2 run produced: its adapter on the base it was trained on, or its whole model."""
    output = stage2_output(root, market, manifest)
    return None if output is None else output_model(root, manifest, config, output)


def output_model(root: str | Path, manifest: dict[str, Any] | None, config: TradelabConfig,
                 output: RunOutput) -> AdvisorModel:
    """The :class:`AdvisorModel` a Stage 2 output is loaded as."""
    ws = Workspace.at(root)
    path = ws.resolve(output.path)
    if output.kind == "full_model":
        return AdvisorModel(path, None)
    base = output.base_model_path
    if base is None:
        stage1 = stage1_of(manifest)
        base = stage1.base_model.local_path if stage1 is not None and stage1.base_model is not None else None
    return AdvisorModel(base_or_none(ws, config, base), path)


def adopt_base(root: str | Path, market: str, model_dir: Path) -> tuple[Path, str]:
    """A stable copy of a whole model Stage 2 handed back, for a Stage 1 to train on; ``(folder, sha256)``.

    The copy lives under ``models/phase3_hybrid/<MKT>/stage2_bases/<sha256[:16]>/`` and is made once per content.

    Raises:
        StageNotReady: ``model_dir`` has no ``config.json``.
    """
    from tradelab.fileio import atomic_copy_dir, sha256_dir

    if not (model_dir / "config.json").is_file():
        raise StageNotReady(f"{model_dir}: no model there (config.json missing); run Stage 2 with a full-model "
                            "engine first, or start Stage 1 from an adapter")
    ws = Workspace.at(root)
    digest = sha256_dir(model_dir)
    target = ws.market_model_dir(market) / STAGE2_BASES_DIR / digest[:16]
    if target.resolve() != model_dir.resolve() and not (target / "config.json").is_file():
        atomic_copy_dir(model_dir, target)
        log.info("%s: Stage 2's model copied to %s for Stage 1", model_dir, target)
    return target, digest


def stage1_start(root: str | Path, market: str, config: TradelabConfig, model: AdvisorModel, *,
                 seed: int) -> TradelabConfig:
    """``config`` set to start Stage 1 from ``model``.

    An adapter is continued on its base. A model without an adapter (a whole model from Stage 2) becomes the base,
    copied by :func:`adopt_base`, with a fresh adapter (:func:`tradelab.advisor.train.fresh_adapter`).
    """
    if model.adapter is not None:
        return model.config_for(config)
    if model.base is None:
        raise StageNotReady("Stage 1 needs an adapter to start from, or a Stage 2 model to use as its base")
    from tradelab.advisor.train import fresh_adapter

    ws = Workspace.at(root)
    base, _ = adopt_base(root, market, model.base)
    adapter = fresh_adapter(base, config, out_dir=ws.market_model_dir(market) / FRESH_ADAPTER_DIR, seed=seed)
    return AdvisorModel(base, adapter).config_for(config)
