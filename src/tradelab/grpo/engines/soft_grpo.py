"""The ``soft-grpo`` engine: the SofT-GRPO repository's verl 0.4.x fork with soft-thinking sglang rollouts.

The fork reads the top-level ``custom_reward_function.*`` and needs ``reward_model.reward_manager=naive``. It runs
with ``PYTHONPATH=<repo>/verl-0.4.x`` (plus the project's ``src`` so verl can load the reward), and cannot train LoRA
(its sglang weight sync pushes full weights), so the actor is ``stage1_merged/``: the base model merged with
``stage1_lora`` by PEFT ``merge_and_unload``. The merged folder records the adapter's sha256 in
:data:`MERGE_MARKER`; a missing folder or a different adapter hash means it is rebuilt before launch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.errors import TradelabError
from tradelab.fileio import atomic_copy_dir, atomic_write_json, sha256_dir, staged_dir
from tradelab.grpo import config_checks
from tradelab.grpo.checks import FAIL, PASS, SKIP, WARN, Check
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import RunArgv
from tradelab.grpo.engines.launch import ExternalEngine
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

ENGINE = "soft-grpo"
MERGE_MARKER = "tradelab_merge.json"
MERGE_FORMAT = "transformers-4.51"
"""The form ``stage1_merged/`` is written in (:mod:`tradelab.grpo.fork_format`); a marker without it is stale."""
FORK_DIR = "verl-0.4.x"
SCRIPT_GLOB = "SofT-GRPO-deepscaler-8k*.sh"

REQUIRED_FILES: tuple[str, ...] = (
    "verl-0.4.x/setup.py",
    "verl-0.4.x/verl/trainer/main_ppo.py",
    "verl-0.4.x/verl/trainer/config/ppo_trainer.yaml",
    "verl-0.4.x/verl/utils/torch_functional.py",
    "verl-0.4.x/verl/workers/actor/dp_actor.py",
    "verl-0.4.x/verl/workers/rollout/sglang_rollout/sglang_rollout.py",
    "Soft-Thinking+noise+loss-main/sglang_soft_thinking_pkg/python/sglang/srt/sampling/sampling_params.py",
    "Soft-Thinking+noise+loss-main/sglang_soft_thinking_pkg/python/sglang/srt/layers/sampler.py",
)
"""Files ARCHITECTURE.md §9 requires under the repository root."""

REQUIRED_CONTENT: dict[str, str] = {
    "verl-0.4.x/verl/trainer/config/ppo_trainer.yaml": "add_noise_gumbel_softmax",
    "verl-0.4.x/verl/utils/torch_functional.py": "logprobs_from_logits_topk_gumbel",
}
"""File -> text it must contain (the fork's soft-thinking additions, not a plain verl 0.4)."""


def missing_repo_files(repo_root: Path) -> list[str]:
    """Every required file (or required content) absent from ``repo_root``, as readable strings."""
    problems = [rel for rel in REQUIRED_FILES if not (repo_root / rel).is_file()]
    for rel, needle in REQUIRED_CONTENT.items():
        path = repo_root / rel
        if path.is_file() and needle not in path.read_text(encoding="utf-8", errors="replace"):
            problems.append(f"{rel} (does not contain {needle!r})")
    if not any(repo_root.glob(SCRIPT_GLOB)):
        problems.append(SCRIPT_GLOB)
    return problems


def merged_state(merged_dir: Path, adapter_dir: Path | None) -> tuple[bool, str]:
    """Whether ``stage1_merged/`` is current for the adapter, and why not."""
    if adapter_dir is None or not adapter_dir.is_dir():
        return False, "the Stage 1 adapter is missing"
    marker = merged_dir / MERGE_MARKER
    if not marker.is_file():
        return False, f"{merged_dir} has not been built" if not merged_dir.exists() else f"{marker} is missing"
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("adapter_sha256")
    except ValueError:
        return False, f"{marker} is not valid JSON"
    if recorded != sha256_dir(adapter_dir):
        return False, f"{merged_dir} was merged from a different adapter (stale)"
    if json.loads(marker.read_text(encoding="utf-8")).get("format") != MERGE_FORMAT:
        return False, f"{merged_dir} is not written in the fork's form ({MERGE_FORMAT})"
    return True, "up to date"


def ensure_merged(base_dir: Path, adapter_dir: Path, merged_dir: Path) -> dict[str, Any]:
    """Build ``stage1_merged/`` with PEFT ``merge_and_unload`` unless it is current.

    The merge runs into a sibling temp folder that replaces the old one only when complete. The saved config and
    tokenizer are then rewritten in the form the fork's transformers 4.51 reads identically
    (:func:`tradelab.grpo.fork_format.write_fork_format`); the changes are recorded in the marker.

    Returns:
        ``{"rebuilt": bool, "reason": str, "path": str}``.
    """
    fresh, reason = merged_state(merged_dir, adapter_dir)
    if fresh:
        return {"rebuilt": False, "reason": reason, "path": str(merged_dir)}
    from tradelab.advisor.train import merge_adapter
    from tradelab.grpo.fork_format import write_fork_format

    with staged_dir(merged_dir) as staging:
        merge_adapter(base_dir, adapter_dir, staging)
        changes = write_fork_format(staging)
        atomic_write_json(staging / MERGE_MARKER, {
            "adapter_path": str(adapter_dir), "adapter_sha256": sha256_dir(adapter_dir),
            "base_model": str(base_dir), "merged_at": utc_now(), "format": MERGE_FORMAT, "format_changes": changes,
        })
    return {"rebuilt": True, "reason": reason, "path": str(merged_dir)}


def build_plan(
    root: str | Path, market: str, config: TradelabConfig, *, python: str | None = None,
    extra_overrides: list[str] | None = None,
) -> base.LaunchPlan:
    """The SofT-GRPO launch for ``market`` (nothing is built or checked here)."""
    ws = Workspace.at(root)
    inputs = base.stage1_inputs(ws.root, market)
    repo_root = base.resolve_repo_root(ws.root, config)
    merged_dir = ws.stage1_merged_dir(market)
    values = base.base_values(ws.root, market, config, ENGINE)
    values["model_path"] = str(merged_dir)
    values["adapter_path"] = base.missing(inputs.adapter, "stage1.lora_adapter_path")
    values["lora_rank"] = "0"
    values["lora_alpha"] = "0"
    plan = base.assemble_plan(
        ws, market, config, engine_name=ENGINE, key="soft_grpo", dialect="fork", values=values,
        python=python, extra_overrides=extra_overrides, repo_root=repo_root, pythonpath_front=(repo_root / FORK_DIR,),
        model_path=merged_dir, adapter_path=inputs.adapter,
    )
    fresh, reason = merged_state(merged_dir, inputs.adapter)
    if not fresh:
        plan.notes.append(f"stage1_merged will be rebuilt before launch: {reason}")
    return plan


def hf_model_dir(ws: Workspace, market: str) -> Path:
    """Where a fork run's Hugging Face model is kept for evaluation and the next Stage 1."""
    return ws.soft_grpo_output_dir(market) / "hf_model"


def repo_check(repo_root: Path | None, source: str = "") -> Check:
    """The SofT-GRPO repository has the file set ARCHITECTURE.md §9 lists; every missing file is named."""
    fix = ("clone it there (git clone <SofT-GRPO repository> SofT-GRPO-master-main), set soft_grpo.repo_root in "
           "config/phase3_soft_grpo.yaml, or export SOFT_GRPO_REPO_ROOT=/path/to/repo")
    where = f" (from {source})" if source else ""
    if repo_root is None or not repo_root.is_dir():
        return Check("soft_grpo_repo", FAIL, f"SofT-GRPO repository not found at {repo_root}{where}; {fix}")
    missing = missing_repo_files(repo_root)
    if missing:
        return Check("soft_grpo_repo", FAIL, f"{repo_root} is incomplete; missing: {', '.join(missing)}. "
                     f"Restore a full copy of the SofT-GRPO repository there")
    return Check("soft_grpo_repo", PASS, f"{repo_root}{where}")


def merged_check(ws: Workspace, market: str, plan: base.LaunchPlan) -> Check:
    """Whether ``stage1_merged/`` is current (a stale one is rebuilt before launch, so this only warns)."""
    fresh, reason = merged_state(ws.stage1_merged_dir(market), plan.adapter_path)
    if fresh:
        return Check("stage1_merged", PASS, f"{ws.stage1_merged_dir(market)} matches the Stage 1 adapter")
    return Check("stage1_merged", WARN, f"{reason}; the runner merges it (PEFT merge_and_unload) before launch")


class SoftGrpoEngine(ExternalEngine):
    """The SofT-GRPO fork: full weights from ``stage1_merged/`` (merged before launch), ``hf_model/`` as output."""

    name = ENGINE
    config_key = "soft_grpo"
    output_kind = "full_model"
    flash_attn_required = True
    soft_thinking_rollout = True

    def build_plan(self, root: str | Path, market: str, config: TradelabConfig, *,
                   python: str | None = None, extra_overrides: list[str] | None = None) -> base.LaunchPlan:
        return build_plan(root, market, config, python=python, extra_overrides=extra_overrides)

    def prepare(self, ws: Workspace, market: str, plan: base.LaunchPlan) -> str | None:
        """Merge the Stage 1 adapter into ``stage1_merged/`` unless it is current."""
        inputs = base.stage1_inputs(ws.root, market)
        merged = ensure_merged(inputs.base_model, inputs.adapter, ws.stage1_merged_dir(market))
        return f"stage1_merged: {'rebuilt' if merged['rebuilt'] else 'reused'} ({merged['reason']})"

    def export_output(self, ws: Workspace, market: str, plan: base.LaunchPlan, run: RunArgv,
                      started_epoch_s: float) -> tuple[Path | None, str | None]:
        """This run's newest checkpoint ``huggingface/`` folder, verified, becomes ``soft_grpo/hf_model/``."""
        from tradelab.grpo import outputs

        found = outputs.fork_hf_model_dir(plan.output_dir, started_epoch_s)
        if found is None:
            return None, (f"this run wrote no checkpoints/global_step_*/actor/{outputs.HF_MODEL_DIR}/ under "
                          f"{plan.output_dir}: "
                          f"add hf_model to actor_rollout_ref.actor.checkpoint.contents and keep trainer.save_freq "
                          f"> 0")
        problem = outputs.verify_hf_model(found)
        if problem:
            return None, problem
        target = hf_model_dir(ws, market)
        atomic_copy_dir(found, target)
        return target, None

    def plan_checks(self, ws: Workspace, market: str, config: TradelabConfig,
                    plan: base.LaunchPlan) -> list[Check]:
        return [repo_check(plan.repo_root, base.repo_root_source(config)), merged_check(ws, market, plan)]

    def context_model_dir(self, ws: Workspace, market: str, plan: base.LaunchPlan) -> Path | None:
        if plan.model_path and (plan.model_path / "config.json").is_file():
            return plan.model_path
        return base.stage1_inputs(ws.root, market).base_model  # merged from it, same context length

    def pitfalls(self, values: Mapping[str, Any]) -> Check:
        return config_checks.soft_grpo_pitfalls(values)

    def artifact_checks(self, ws: Workspace, market: str, plan: base.LaunchPlan,
                        timeout_s: int) -> tuple[list[Check], dict[str, Any] | None]:
        """Build ``stage1_merged/`` and prove the fork's interpreter reads it as tradelab reads the base model."""
        from tradelab.grpo.artifact_check import parity_check, probe_messages, think_end_check

        inputs = base.stage1_inputs(ws.root, market)
        adapter_ready = inputs.adapter is not None and (inputs.adapter / "adapter_config.json").is_file()
        if inputs.base_model is None or not adapter_ready:
            return [Check("artifact_parity", SKIP, "no Stage 1 base model and adapter to merge yet")], None
        model_dir = ws.stage1_merged_dir(market)
        try:
            ensure_merged(inputs.base_model, inputs.adapter, model_dir)
        except (OSError, ValueError, RuntimeError, TradelabError) as exc:
            return [Check("artifact_parity", FAIL, f"cannot build {model_dir} from "
                          f"{inputs.base_model} + {inputs.adapter}: {exc}; check the Stage 1 model files")], None
        messages = probe_messages(ws.soft_grpo_data_dir(market) / "stage2_val.parquet")
        fix = "delete it: the runner merges it again and writes it in the fork's form (tradelab.grpo.fork_format)"
        check, details = parity_check(plan, model_dir, messages, timeout_s, reference_dir=inputs.base_model, fix=fix)
        think = think_end_check(details)
        return [check] + ([think] if think else []), details


ENGINE_SPEC = SoftGrpoEngine()
