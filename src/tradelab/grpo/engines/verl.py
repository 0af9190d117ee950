"""The ``verl`` engine: PyPI verl >= 0.9, standard GRPO, LoRA continued from ``stage1_lora``.

Key names checked against verl 0.9.1's ``trainer/config/_generated_ppo_trainer.yaml``: the reward is
``reward.custom_reward_function.path`` / ``.name`` (the top-level ``custom_reward_function`` survives only as a
legacy block), LoRA is ``actor_rollout_ref.model.lora_rank`` / ``lora_alpha`` / ``lora_adapter_path``. ``lora_rank``
is the Stage 1 adapter's ``r``: rank 0 would silently train the full model. After a run the last checkpoint
(``<output_dir>/checkpoints/global_step_<N>/actor``) is merged with ``python -m verl.model_merger merge`` and its
``lora_adapter/`` becomes ``soft_grpo/adapter/``.
"""

from __future__ import annotations

from pathlib import Path

from tradelab.config import TradelabConfig
from tradelab.grpo.engines import base
from tradelab.paths import Workspace

ENGINE = "verl"


def build_plan(
    root: str | Path, market: str, config: TradelabConfig, *, test_mode: bool, python: str | None = None,
    extra_overrides: list[str] | None = None,
) -> base.LaunchPlan:
    """The verl launch for ``market`` (nothing is checked or created here; preflight does that)."""
    ws = Workspace.at(root)
    engine = config.soft_grpo.engines.verl
    inputs = base.stage1_inputs(ws.root, market)
    values = base.base_values(ws.root, market, config, ENGINE)
    values["model_path"] = base.missing(inputs.base_model, "stage1.base_model.local_path")
    values["adapter_path"] = base.missing(inputs.adapter, "stage1.lora_adapter_path")
    values["lora_rank"] = str(inputs.lora_rank) if inputs.lora_rank else f"{base.MISSING_PREFIX}adapter_config.r"
    values["lora_alpha"] = str(inputs.lora_alpha) if inputs.lora_alpha else f"{base.MISSING_PREFIX}adapter_config.lora_alpha"
    overrides = base.engine_overrides(engine, values, "verl", test_mode=test_mode, extra=extra_overrides)
    launch_python = base.resolve_python(ws.root, config, python)
    env_overrides = base.engine_env(engine, values, "engines.verl.env")
    env_overrides["PYTHONPATH"] = base.pythonpath(base.project_src())
    env_overrides["TENSORBOARD_DIR"] = values["tensorboard_dir"]
    plan = base.LaunchPlan(
        engine=ENGINE, dialect="pypi", python=launch_python,
        argv=base.command(launch_python, engine, overrides, None),
        cwd=base.launch_cwd(ws, market, engine, None), env_overrides=env_overrides, overrides=overrides,
        output_dir=ws.soft_grpo_output_dir(market), tensorboard_dir=ws.soft_grpo_tensorboard_dir(market),
        model_path=inputs.base_model, adapter_path=inputs.adapter, repo_root=None, mode=engine.mode,
    )
    plan.missing = {k: v for k, v in values.items() if v.startswith(base.MISSING_PREFIX)}
    return plan


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
