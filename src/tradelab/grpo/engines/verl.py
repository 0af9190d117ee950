"""The ``verl`` engine: PyPI verl >= 0.9, standard GRPO, LoRA continued from ``stage1_lora``.

Key names checked against verl 0.9.1's ``trainer/config/_generated_ppo_trainer.yaml``: the reward is
``reward.custom_reward_function.path`` / ``.name`` (the top-level ``custom_reward_function`` survives only as a
legacy block), LoRA is ``actor_rollout_ref.model.lora_rank`` / ``lora_alpha`` / ``lora_adapter_path``. ``lora_rank``
is the Stage 1 adapter's ``r``: rank 0 would silently train the full model. After a run the last checkpoint
(``<output_dir>/checkpoints/global_step_<N>/actor``) is merged with ``python -m verl.model_merger merge`` and its
``lora_adapter/`` becomes ``soft_grpo/adapter/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.fileio import atomic_copy_dir
from tradelab.grpo import config_checks
from tradelab.grpo.checks import PASS, Check
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import RunArgv
from tradelab.grpo.engines.launch import ExternalEngine
from tradelab.paths import Workspace

ENGINE = "verl"


def build_plan(
    root: str | Path, market: str, config: TradelabConfig, *, python: str | None = None,
    extra_overrides: list[str] | None = None,
) -> base.LaunchPlan:
    """The verl launch for ``market`` (nothing is checked or created here; preflight does that)."""
    ws = Workspace.at(root)
    inputs = base.stage1_inputs(ws.root, market)
    values = base.base_values(ws.root, market, config, ENGINE)
    values["model_path"] = base.missing(inputs.base_model, "stage1.base_model.local_path")
    values["adapter_path"] = base.missing(inputs.adapter, "stage1.lora_adapter_path")
    absent = base.MISSING_PREFIX
    values["lora_rank"] = str(inputs.lora_rank) if inputs.lora_rank else f"{absent}adapter_config.r"
    values["lora_alpha"] = str(inputs.lora_alpha) if inputs.lora_alpha else f"{absent}adapter_config.lora_alpha"
    return base.assemble_plan(
        ws, market, config, engine_name=ENGINE, key="verl", dialect="pypi", values=values,
        python=python, extra_overrides=extra_overrides, repo_root=None, pythonpath_front=(),
        model_path=inputs.base_model, adapter_path=inputs.adapter,
    )


def latest_actor_checkpoint(output_dir: Path) -> Path | None:
    """``checkpoints/global_step_<N>/actor`` of the highest N (verl's ``latest_checkpointed_iteration.txt`` first)."""
    checkpoints = output_dir / "checkpoints"
    marker = checkpoints / "latest_checkpointed_iteration.txt"
    if marker.is_file():
        step = marker.read_text(encoding="utf-8").strip()
        candidate = checkpoints / f"global_step_{step}" / "actor"
        if candidate.is_dir():
            return candidate
    steps = sorted(
        (int(p.name.removeprefix("global_step_")), p) for p in checkpoints.glob("global_step_*")
        if p.name.removeprefix("global_step_").isdigit() and (p / "actor").is_dir()
    )
    return steps[-1][1] / "actor" if steps else None


def merger_argv(python: str, actor_dir: Path, target_dir: Path) -> list[str]:
    """``python -m verl.model_merger merge --backend fsdp --local_dir <actor> --target_dir <target>``."""
    return [python, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
            "--local_dir", str(actor_dir), "--target_dir", str(target_dir)]


class VerlEngine(ExternalEngine):
    """PyPI verl with LoRA: the plan above, no prepare step, the merged LoRA adapter as output."""

    name = ENGINE
    config_key = "verl"
    output_kind = "adapter"

    def build_plan(self, root: str | Path, market: str, config: TradelabConfig, *,
                   python: str | None = None, extra_overrides: list[str] | None = None) -> base.LaunchPlan:
        return build_plan(root, market, config, python=python, extra_overrides=extra_overrides)

    def export_output(self, ws: Workspace, market: str, plan: base.LaunchPlan, run: RunArgv,
                      started_epoch_s: float) -> tuple[Path | None, str | None]:
        """Merge the last checkpoint with ``verl.model_merger``; its verified ``lora_adapter/`` becomes the adapter."""
        from tradelab.grpo import outputs

        actor = latest_actor_checkpoint(plan.output_dir)
        if actor is None:
            return None, f"no checkpoint under {plan.output_dir / 'checkpoints'} (is trainer.save_freq > 0?)"
        merged = plan.output_dir / "merged" / actor.parent.name
        code = run(merger_argv(plan.python, actor, merged))
        if code != 0:
            return None, f"verl.model_merger exited with code {code}"
        lora = merged / "lora_adapter"
        if not (lora / "adapter_config.json").is_file():
            return None, f"verl.model_merger wrote no {lora} (was lora_rank > 0?)"
        problem = outputs.verify_adapter(lora)
        if problem:
            return None, problem
        target = ws.soft_grpo_adapter_dir(market)
        atomic_copy_dir(lora, target)
        return target, None

    def pitfalls(self, values: Mapping[str, Any]) -> Check:
        return config_checks.verl_pitfalls(values)

    def artifact_checks(self, ws: Workspace, market: str, plan: base.LaunchPlan,
                        timeout_s: int) -> tuple[list[Check], dict[str, Any] | None]:
        """verl loads the Stage 1 base model; under tradelab's own interpreter it reads it as tradelab does."""
        from tradelab.grpo.artifact_check import parity_check, probe_messages

        model_dir = base.stage1_inputs(ws.root, market).base_model
        if os.path.realpath(plan.python) == os.path.realpath(sys.executable):
            return [Check("artifact_parity", PASS, f"{plan.python} is tradelab's own interpreter: it reads "
                          f"{model_dir} as tradelab does")], None
        messages = probe_messages(ws.soft_grpo_data_dir(market) / "stage2_val.parquet")
        fix = ("rewrite the base's config and tokenizer for that interpreter "
               "(tradelab.grpo.fork_format.write_fork_format) or run verl with tradelab's transformers")
        check, details = parity_check(plan, model_dir, messages, timeout_s, reference_dir=None, fix=fix)
        return [check], details


ENGINE_SPEC = VerlEngine()
