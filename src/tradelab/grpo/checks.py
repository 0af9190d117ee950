"""The individual preflight checks (pure functions over paths, probe results and config values).

:mod:`tradelab.grpo.preflight` runs them; each returns a :class:`Check` whose message names what was found and how
to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradelab.fileio import sha256_file
from tradelab.grpo.engines import base
from tradelab.manifest import load_manifest, stage2_of
from tradelab.paths import Workspace

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_SKIPPED = "skipped in dataset-only mode"
SGLANG_FORK_DIR = "sglang_soft_thinking_pkg"
SGLANG_FORK_VERSION = "0.4.6.post1"


@dataclass(frozen=True)
class Check:
    """One preflight check: ``status`` is pass, warn, fail or skip; ``message`` says what was found and the fix."""

    name: str
    status: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


# ------------------------------------------------------------------------------------------------ Stage 1 inputs
def stage1_checks(ws: Workspace, market: str) -> list[Check]:
    """Base model weights and the Stage 1 adapter recorded in the manifest."""
    inputs = base.stage1_inputs(ws.root, market)
    fix = f"run `python main.py stage1 --market {market}` (add --test for a smoke run)"
    if not inputs.manifest_found:
        reason = f"{ws.manifest_path(market)} has no stage1 section; {fix}"
        return [Check("base_model", FAIL, reason), Check("stage1_adapter", FAIL, reason)]
    return [_base_model_check(inputs.base_model, fix), _adapter_check(inputs, fix)]


def _base_model_check(path: Path | None, fix: str) -> Check:
    if path is None:
        return Check("base_model", FAIL, f"stage1.base_model.local_path is not recorded in the manifest; {fix}")
    if not (path / "config.json").is_file():
        return Check("base_model", FAIL, f"{path}: no config.json; put the base model weights there or {fix}")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        return Check("base_model", FAIL, f"{path}: config.json but no *.safetensors/*.bin weights; copy them in")
    return Check("base_model", PASS, str(path))


def _adapter_check(inputs: base.Stage1Inputs, fix: str) -> Check:
    path = inputs.adapter
    if path is None or not (path / "adapter_config.json").is_file():
        return Check("stage1_adapter", FAIL, f"{path}: no adapter_config.json; {fix}")
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        return Check("stage1_adapter", FAIL, f"{path}: no adapter_model.safetensors; {fix}")
    if not inputs.lora_rank or inputs.lora_rank <= 0:
        return Check("stage1_adapter", FAIL, f"{path}/adapter_config.json: r = {inputs.lora_rank!r}; "
                     f"verl needs the adapter's rank > 0 (rank 0 trains the full model); retrain Stage 1")
    return Check("stage1_adapter", PASS, f"{path} (r={inputs.lora_rank}, lora_alpha={inputs.lora_alpha})")


# ----------------------------------------------------------------------------------------------------- dataset
def dataset_rows(ws: Workspace, market: str, split: str) -> int | None:
    """Rows of the last exported split from the manifest, or None before any export."""
    dataset = stage2_of(load_manifest(ws.root, market)).dataset
    value = dataset.counts.get(split) if dataset is not None else None
    return value if isinstance(value, int) else None


def dataset_train_order(ws: Workspace, market: str) -> str | None:
    """``train_order`` of the last export (:mod:`tradelab.grpo.train_order`), or None before any export recorded it."""
    dataset = stage2_of(load_manifest(ws.root, market)).dataset
    order = dataset.train_order if dataset is not None else None
    return order["value"] if order is not None else None


def dataset_check(ws: Workspace, market: str, min_val_rows: int = 1) -> Check:
    """The exported parquet files exist and still match the hashes recorded at export."""
    dataset = stage2_of(load_manifest(ws.root, market)).dataset
    fix = f"run `python main.py stage2 --market {market} --dataset-only`"
    if dataset is None:
        return Check("dataset", FAIL, f"no Stage 2 dataset has been exported; {fix}")
    problems = []
    for name in ("train", "val"):
        path = ws.resolve(dataset.paths[name])  # recorded relative to the workspace root
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != dataset.sha256s[name]:
            problems.append(f"{path} changed since export (sha256 differs from the manifest)")
    if problems:
        return Check("dataset", FAIL, "; ".join(problems) + f"; {fix}")
    counts = dataset.counts
    message = f"train={counts['train']} val={counts['val']} rows (profile {dataset.profile or 'not recorded'})"
    if counts["val"] < min_val_rows:
        return Check("dataset", WARN, f"{message}; fewer than {min_val_rows} validation rows: export more data")
    return Check("dataset", PASS, message)


# ------------------------------------------------------------------------------------------- launch environment
def verl_dialect(info: Mapping[str, Any], repo_root: Path | None) -> str:
    """"pypi" (>= 0.9), "fork" (0.4.x, from the SofT-GRPO repo) or "other"."""
    version = str(info.get("version") or "")
    file = str(info.get("file") or "")
    if (repo_root is not None and file.startswith(str(repo_root / "verl-0.4.x"))) or version.startswith("0.4"):
        return "fork"
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return "other"
    return "pypi" if (major, minor) >= (0, 9) else "other"


def _verl_check(probe: Mapping[str, Any], plan: base.LaunchPlan) -> Check:
    info = probe["verl"]
    if not info["importable"]:
        fix = ("install verl>=0.9 into the launch environment" if plan.dialect == "pypi"
               else f"check that {plan.repo_root}/verl-0.4.x exists and its dependencies are installed")
        return Check("verl", FAIL, f"`import verl` fails under {probe['python']}: {info['error']}; {fix}")
    dialect = verl_dialect(info, plan.repo_root)
    found = f"verl {info['version']} from {info['file']} ({dialect})"
    if dialect != plan.dialect:
        want = "PyPI verl >= 0.9" if plan.dialect == "pypi" else f"the fork under {plan.repo_root}/verl-0.4.x"
        return Check("verl", FAIL, f"found {found}, engine {plan.engine} needs {want}; point runner.python at the "
                     f"environment that has it")
    return Check("verl", PASS, found)


def _gpu_checks(probe: Mapping[str, Any], plan: base.LaunchPlan, n_gpus: int, dataset_only: bool, *,
                flash_attn_required: bool, soft_thinking_rollout: bool) -> list[Check]:
    names = ("cuda", "gpu_count", "flash_attn", "rollout_backend")
    if dataset_only:
        return [Check(name, SKIP, _SKIPPED) for name in names]
    torch = probe["torch"]
    checks = []
    if torch.get("cuda_available"):
        checks.append(Check("cuda", PASS, f"torch {torch.get('version')} sees CUDA"))
    else:
        checks.append(Check("cuda", FAIL, f"torch.cuda.is_available() is False under {probe['python']}; run on a "
                            f"GPU machine or use --dataset-only / --engine local"))
    count = int(torch.get("device_count") or 0)
    checks.append(gpu_count_check(count, n_gpus))
    checks.append(flash_attn_check(probe, flash_attn_required))
    checks.append(_backend_check(probe, plan, soft_thinking_rollout))
    return checks


def gpu_count_check(visible: int, used: int) -> Check:
    """Fail when fewer GPUs are visible than the launch uses (verl hangs); warn when some would sit idle."""
    found = f"{visible} GPU(s) visible to the launch interpreter, trainer.n_gpus_per_node = {used}"
    if visible < used:
        return Check("gpu_count", FAIL, f"{found}; lower runner.n_gpus_per_node or free GPUs (verl hangs)")
    if used < visible:
        return Check("gpu_count", WARN, f"{found}: {visible - used} GPU(s) stay idle; set runner.n_gpus_per_node: "
                     f"null in config/phase3_soft_grpo.yaml to use every visible GPU")
    return Check("gpu_count", PASS, found)


def flash_attn_check(probe: Mapping[str, Any], required: bool) -> Check:
    """flash-attn and its Triton cross-entropy, with what each absence really does to the engine.

    Args:
        probe: The launch environment's probe result.
        required: The engine's ``flash_attn_required`` (the SofT-GRPO fork): it crashes without flash-attn and
            silently degrades without its Triton cross-entropy; verl only runs slower.
    """
    package = probe.get("flash_attn") or {"importable": probe["flash_attn_cross_entropy"]["importable"]}
    fa = probe["flash_attn_cross_entropy"]
    fix = "install a flash-attn build matching the launch environment's torch/CUDA (the fork pins 2.7.3)"
    if fa["importable"]:
        return Check("flash_attn", PASS, "flash_attn.ops.triton.cross_entropy imports")
    if not package.get("importable"):
        effect = ("the fork's remove-padding actor imports flash_attn.bert_padding and crashes on CUDA at the "
                  "first step" if required else "verl runs without it, but without flash-attn's kernels")
        return Check("flash_attn", FAIL if required else WARN,
                     f"flash-attn is not installed ({package.get('error')}); {effect}; {fix}")
    effect = ("SofT-GRPO silently falls back to plain log-probs without its Triton cross-entropy" if required
              else "verl runs without it, but without flash-attn's fused cross-entropy")
    return Check("flash_attn", FAIL if required else WARN,
                 f"flash-attn imports but its Triton cross-entropy does not ({fa['error']}); {effect}; {fix}")


def _backend_check(probe: Mapping[str, Any], plan: base.LaunchPlan, soft_thinking: bool) -> Check:
    """The rollout engine imports; for SofT-GRPO it must be the soft-thinking sglang fork."""
    name = base.override_map(plan.overrides).get("actor_rollout_ref.rollout.name", "vllm")
    backend = probe.get(name) or {"importable": False, "error": f"unknown rollout backend {name!r}"}
    if not backend["importable"]:
        return Check("rollout_backend", FAIL, f"rollout backend {name} does not import: {backend.get('error')}; "
                     f"install it in the launch environment")
    found = f"{name} {backend.get('version')} from {backend.get('file')}"
    if soft_thinking and name == "sglang":
        soft = probe.get("sglang_soft_thinking") or {}
        if not soft.get("found"):
            return Check("rollout_backend", FAIL, f"{found} is not the soft-thinking fork: its "
                         f"{soft.get('file') or 'srt/server_args.py'} has no enable_soft_thinking (plain sglang "
                         f"{SGLANG_FORK_VERSION} has the fork's version number and crashes on that argument); "
                         f"`pip install -e` {SGLANG_FORK_DIR}/python from the repository")
    return Check("rollout_backend", PASS, found)


def probe_checks(probe: Mapping[str, Any], plan: base.LaunchPlan, runner: Any, dataset_only: bool, *,
                 flash_attn_required: bool, soft_thinking_rollout: bool) -> list[Check]:
    """verl dialect, the reward import and (unless dataset-only) CUDA, GPU count, flash-attn, rollout backend.

    The two flags are the engine's (:class:`tradelab.grpo.engines.interface.Engine`): whether flash-attn is
    required, and whether an sglang rollout must be the soft-thinking fork.
    """
    checks = [_verl_check(probe, plan)]
    reward = probe["reward"]
    checks.append(Check("reward_import", PASS if reward["importable"] else FAIL,
                        f"tradelab.grpo.reward imports ({reward.get('file')})" if reward["importable"]
                        else f"tradelab.grpo.reward does not import in the launch environment: {reward['error']}; "
                             f"it needs numpy there and the project's src on PYTHONPATH"))
    raw = base.override_map(plan.overrides).get("trainer.n_gpus_per_node", "").strip()
    used = int(raw) if raw.isdigit() else (runner.n_gpus_per_node or 1)
    checks.extend(_gpu_checks(probe, plan, used, dataset_only, flash_attn_required=flash_attn_required,
                              soft_thinking_rollout=soft_thinking_rollout))
    return checks


def cluster_check(nnodes: int, env: Mapping[str, str]) -> Check:
    """More than one node needs a running Ray cluster (RAY_ADDRESS)."""
    if nnodes > 1 and not env.get("RAY_ADDRESS"):
        return Check("ray_cluster", FAIL, f"runner.nnodes = {nnodes} but RAY_ADDRESS is not set; start the Ray "
                     f"cluster and export RAY_ADDRESS, or set runner.nnodes: 1")
    return Check("ray_cluster", PASS, f"nnodes={nnodes}" + (f", RAY_ADDRESS={env['RAY_ADDRESS']}"
                                                           if env.get("RAY_ADDRESS") else ""))
