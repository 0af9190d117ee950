"""Preflight checks on the composed engine config: Hydra composition, batch rules, SofT-GRPO pitfalls.

Values come from verl's own composition in the launch environment when it ran (defaults included); otherwise from
the override list alone (a key the overrides do not set is then unknown and reported as such).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradelab.grpo.checks import FAIL, PASS, WARN, Check
from tradelab.grpo.engines import base

ABSENT = "__absent__"
_A = "actor_rollout_ref"
MICRO_PAIRS: tuple[tuple[str, str], ...] = (
    (f"{_A}.actor.ppo_micro_batch_size", f"{_A}.actor.ppo_micro_batch_size_per_gpu"),
    (f"{_A}.rollout.log_prob_micro_batch_size", f"{_A}.rollout.log_prob_micro_batch_size_per_gpu"),
    (f"{_A}.ref.log_prob_micro_batch_size", f"{_A}.ref.log_prob_micro_batch_size_per_gpu"),
)


def _scalar(text: str) -> Any:
    """A Hydra override value as Python (ints, floats, booleans, null; anything else stays a string)."""
    lowered = text.strip().strip("'\"").lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text.strip().strip("'\"")


def effective_values(overrides: list[str], composed: Mapping[str, Any] | None) -> dict[str, Any]:
    """Config values the rules need: composed ones when available, else parsed from the overrides."""
    if composed is not None:
        return {k: v for k, v in composed.items() if v != ABSENT and not isinstance(v, dict)}
    return {k: _scalar(v) for k, v in base.override_map(overrides).items()}


def compose_check(result: Mapping[str, Any] | None, error: str, plan: base.LaunchPlan, config_key: str) -> Check:
    """Turn the compose probe's answer into a check (unknown keys and validate_config failures fail)."""
    where = f"engines.{config_key}.args"
    if result is None:
        return Check("config_compose", FAIL, f"composing the config failed to run: {error}")
    if not result.get("ok"):
        if result.get("stage") == "compose":
            return Check("config_compose", FAIL, f"verl's Hydra config rejects the overrides: {result['error']}; "
                         f"fix the key in {where} / args_overlay (a key verl does not define needs a leading +)")
        return Check("config_compose", FAIL, f"cannot import hydra/verl to compose: {result.get('error')}")
    validation = result.get("validate") or {}
    if validation.get("ran") and not validation.get("ok"):
        return Check("config_compose", FAIL, f"verl validate_config rejects the composed config: "
                     f"{validation['error']}; adjust {where}")
    note = "validate_config passed" if validation.get("ran") else "validate_config not available in this dialect"
    if validation.get("skipped"):
        note += f"; {validation['skipped']}"
    return Check("config_compose", PASS, f"composed with verl {result.get('verl_version')} ({note})")


def _int(values: Mapping[str, Any], key: str) -> int | None:
    value = values.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def batch_problems(values: Mapping[str, Any], train_rows: int | None, min_train_batches: int) -> list[str]:
    """Every violated batch rule of ARCHITECTURE.md §9, each naming the keys and values involved."""
    problems = []
    tbs, n = _int(values, "data.train_batch_size"), _int(values, f"{_A}.rollout.n")
    gpus = (_int(values, "trainer.n_gpus_per_node") or 0) * (_int(values, "trainer.nnodes") or 1)
    mini = _int(values, f"{_A}.actor.ppo_mini_batch_size")
    if n is None or n < 2:
        problems.append(f"{_A}.rollout.n = {n}: GRPO needs at least 2 rollouts per prompt")
    if tbs is None:
        problems.append("data.train_batch_size is not set")
    elif n and gpus and (tbs * n) % gpus:
        problems.append(f"data.train_batch_size x rollout.n = {tbs * n} is not divisible by "
                        f"n_gpus_per_node x nnodes = {gpus}")
    if tbs is not None and mini is not None and tbs < mini:
        problems.append(f"data.train_batch_size = {tbs} < {_A}.actor.ppo_mini_batch_size = {mini}")
    problems.extend(per_gpu_problems(values, gpus))
    if not values.get(f"{_A}.actor.use_dynamic_bsz"):
        uses_ref = bool(values.get(f"{_A}.actor.use_kl_loss"))
        for pair in MICRO_PAIRS if uses_ref else MICRO_PAIRS[:2]:
            set_count = sum(values.get(k) is not None for k in pair)
            if set_count != 1:
                problems.append(f"exactly one of {pair[0]} / {pair[1]} must be set (found {set_count})")
    if tbs is not None and (train_rows is None or train_rows < tbs * min_train_batches):
        problems.append(f"train rows = {train_rows} < data.train_batch_size x preflight.min_train_batches = "
                        f"{tbs * min_train_batches}; export more data or lower data.train_batch_size")
    save_freq = _int(values, "trainer.save_freq")
    if save_freq is None or save_freq <= 0:
        problems.append(f"trainer.save_freq = {save_freq}: set it > 0 or the run leaves no checkpoint to export")
    return problems


def per_gpu_problems(values: Mapping[str, Any], gpus: int) -> list[str]:
    """The actor worker's own rule (fork and PyPI ``fsdp_workers.py``): the mini-batch normalised per GPU.

    The worker multiplies ``ppo_mini_batch_size`` by ``rollout.n`` and divides it by the data-parallel size
    (GPUs / Ulysses sequence-parallel size); the result must be > 0 and divisible by
    ``ppo_micro_batch_size_per_gpu``, else the worker asserts after the cluster has started.
    """
    mini, n = _int(values, f"{_A}.actor.ppo_mini_batch_size"), _int(values, f"{_A}.rollout.n")
    micro = _int(values, f"{_A}.actor.ppo_micro_batch_size_per_gpu")
    sp = _int(values, f"{_A}.actor.ulysses_sequence_parallel_size") or 1
    if not (mini and n and gpus) or gpus // sp == 0:
        return []
    normalised = mini * n // (gpus // sp)
    if normalised <= 0:
        return [f"ppo_mini_batch_size x rollout.n / (GPUs / sequence parallel) = {mini} x {n} / {gpus // sp} = 0 "
                f"per GPU: the actor worker asserts; raise ppo_mini_batch_size to at least {-(-gpus // sp // n)}"]
    if micro and normalised % micro:
        return [f"ppo_mini_batch_size per GPU = {mini} x {n} / {gpus // sp} = {normalised} is not divisible by "
                f"ppo_micro_batch_size_per_gpu = {micro}: the actor worker asserts"]
    return []


def context_check(values: Mapping[str, Any], model_dir: Any) -> Check:
    """Prompt + response must fit the model's ``max_position_embeddings`` (the sglang rollout asserts otherwise)."""
    import json
    from pathlib import Path

    prompt, response = _int(values, "data.max_prompt_length"), _int(values, "data.max_response_length")
    config = Path(model_dir) / "config.json" if model_dir else None
    if config is None or not config.is_file() or prompt is None or response is None:
        return Check("context_length", WARN, f"cannot check prompt + response against the model's context "
                     f"(max_prompt_length={prompt}, max_response_length={response}, config {config})")
    try:
        limit = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except ValueError as exc:
        return Check("context_length", FAIL, f"{config} is not valid JSON: {exc}")
    if isinstance(limit, int) and prompt + response > limit:
        return Check("context_length", FAIL, f"data.max_prompt_length + data.max_response_length = {prompt} + "
                     f"{response} = {prompt + response} > max_position_embeddings = {limit} of {model_dir}; the "
                     f"rollout asserts. Lower them in engines.*.args / args_overlay or use a longer-context model")
    return Check("context_length", PASS, f"{prompt} + {response} <= max_position_embeddings {limit}")


def batch_check(values: Mapping[str, Any], train_rows: int | None, min_train_batches: int) -> Check:
    problems = batch_problems(values, train_rows, min_train_batches)
    if problems:
        return Check("batch_rules", FAIL, "; ".join(problems))
    return Check("batch_rules", PASS, f"train_batch_size={values.get('data.train_batch_size')} "
                 f"n={values.get(f'{_A}.rollout.n')} train_rows={train_rows}")


def soft_grpo_problems(values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(failures, warnings)`` for the settings without which the fork silently runs plain GRPO or breaks."""
    failures, warnings = [], []
    if values.get(f"{_A}.model.use_remove_padding") is not True:
        failures.append(f"{_A}.model.use_remove_padding must be True (else soft thinking silently falls back)")
    if values.get(f"{_A}.rollout.enable_soft_thinking") is not True:
        failures.append(f"{_A}.rollout.enable_soft_thinking must be True")
    if (_int(values, f"{_A}.model.lora_rank") or 0) > 0 or values.get(f"{_A}.model.lora_adapter_path"):
        failures.append("the fork cannot train LoRA (sglang weight sync pushes full weights): remove lora_rank / "
                        "lora_adapter_path; the actor is stage1_merged")
    if values.get(f"{_A}.actor.strategy", "fsdp") != "fsdp":
        failures.append(f"{_A}.actor.strategy must be fsdp")
    if values.get(f"{_A}.rollout.name") != "sglang":
        failures.append(f"{_A}.rollout.name must be sglang (the soft-thinking fork)")
    if values.get(f"{_A}.model.use_fused_kernels") is True:
        failures.append(f"{_A}.model.use_fused_kernels must be False: with fused kernels the fork's actor takes "
                        f"log-probs from the fused output and skips the Gumbel top-k scoring of soft tokens")
    gumbel = values.get(f"{_A}.rollout.add_noise_gumbel_softmax") is True
    if gumbel and values.get(f"{_A}.rollout.add_noise_dirichlet") is True:
        failures.append(f"{_A}.rollout.add_noise_dirichlet and add_noise_gumbel_softmax are both True: the sglang "
                        f"rollout then samples Dirichlet noise while the actor scores Gumbel; keep one (Gumbel)")
    if not gumbel:
        warnings.append(f"{_A}.rollout.add_noise_gumbel_softmax is not True (no Gumbel exploration noise)")
    contents = values.get(f"{_A}.actor.checkpoint.contents")
    if "hf_model" not in str(contents or ""):
        failures.append(f"{_A}.actor.checkpoint.contents = {contents} has no hf_model: the fork would save sharded "
                        f"FSDP files only, and the run would leave no Hugging Face model for evaluation or Stage 1")
    return failures, warnings


def verl_problems(values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(failures, warnings)`` for PyPI verl 0.9: keys it moved or removed, checked against its own code.

    - the reward is ``reward.custom_reward_function.*``; the top-level block is kept only as a legacy stub;
    - ``actor_rollout_ref.rollout.mode=sync`` was removed (``RolloutConfig`` raises);
    - ``trainer.use_v1`` defaults to True; the V0 trainer is deprecated;
    - LoRA continues from ``actor_rollout_ref.model.lora_adapter_path`` with ``lora_rank`` > 0.
    """
    failures, warnings = [], []
    if values.get(f"{_A}.rollout.mode") == "sync":
        failures.append(f"{_A}.rollout.mode=sync was removed in verl 0.9 (RolloutConfig raises); drop it or use async")
    if values.get("custom_reward_function.path") and not values.get("reward.custom_reward_function.path"):
        failures.append("custom_reward_function.path is the pre-0.9 key and is ignored; set "
                        "reward.custom_reward_function.path / .name")
    if values.get("trainer.use_v1") is False:
        warnings.append("trainer.use_v1=False selects verl's deprecated V0 trainer (main_ppo_v0)")
    rank = _int(values, f"{_A}.model.lora_rank") or 0
    if values.get(f"{_A}.model.lora_adapter_path") and rank <= 0:
        failures.append(f"{_A}.model.lora_adapter_path is set but lora_rank = {rank}: verl would train the full model")
    return failures, warnings


def _settings_check(name: str, problems: tuple[list[str], list[str]], ok_message: str) -> Check:
    """FAIL with every problem when any failure, WARN with the warnings, else PASS with ``ok_message``."""
    failures, warnings = problems
    if failures:
        return Check(name, FAIL, "; ".join(failures + warnings))
    if warnings:
        return Check(name, WARN, "; ".join(warnings))
    return Check(name, PASS, ok_message)


def verl_pitfalls(values: Mapping[str, Any]) -> Check:
    return _settings_check("verl_settings", verl_problems(values),
                           "reward.* keys, async rollout, V1 trainer, LoRA from stage1_lora")


def soft_grpo_pitfalls(values: Mapping[str, Any]) -> Check:
    return _settings_check("soft_grpo_settings", soft_grpo_problems(values),
                           "remove-padding, soft thinking, fsdp, sglang, full weights")


FILTER_ENABLE, FILTER_METRIC = "algorithm.filter_groups.enable", "algorithm.filter_groups.metric"
"""verl's DAPO dynamic sampling (``algorithm.filter_groups``): drop groups whose rewards all agree and refill."""


def filter_groups_check(values: Mapping[str, Any], *, composed: bool, dialect: str) -> Check:
    """Whether the launch drops zero-variance groups as the local engine's ``grpo_local.dynamic_sampling`` does.

    PyPI verl 0.9 implements ``algorithm.filter_groups`` in its V1 trainer's replay buffer (evict the group, refill
    a prompt; ``max_num_gen_batches`` is ignored there). The SofT-GRPO fork's verl 0.4.x ``main_ppo`` has no such key:
    DAPO lives in verl's ``recipe/dapo`` trainer, which the fork does not launch.

    Args:
        values: Effective config values (composed, or parsed from the overrides).
        composed: Whether ``values`` came from verl's own composition (a key it lacks is then known to be absent).
        dialect: The plan's verl dialect, ``pypi`` or ``fork``.
    """
    enabled = values.get(FILTER_ENABLE) is True
    if dialect == "fork":
        if enabled:
            return Check("filter_groups", FAIL, f"{FILTER_ENABLE}=true: the SofT-GRPO fork's verl 0.4.x main_ppo has "
                         "no algorithm.filter_groups (DAPO is in verl's recipe/dapo trainer); remove it from "
                         "engines.soft_grpo.args")
        return Check("filter_groups", WARN, "not supported by the SofT-GRPO fork (verl 0.4.x main_ppo has no "
                     "algorithm.filter_groups): groups whose answers all score the same train with zero advantage "
                     "and the batch is not refilled; the local engine's grpo_local.dynamic_sampling does this")
    if composed and FILTER_ENABLE not in values:
        return Check("filter_groups", WARN, "this verl has no algorithm.filter_groups: zero-variance groups are not "
                     "dropped; verl >= 0.9 supports it in its V1 trainer")
    if not enabled:
        return Check("filter_groups", WARN, f"supported by verl 0.9's V1 trainer but off: set {FILTER_ENABLE}=true "
                     f"and {FILTER_METRIC}=reward in engines.verl.args to drop groups whose rewards all agree")
    if values.get("trainer.use_v1") is False:
        return Check("filter_groups", FAIL, f"{FILTER_ENABLE}=true needs verl's V1 trainer; trainer.use_v1=False runs "
                     "the deprecated V0 trainer, which ignores it")
    metric = values.get(FILTER_METRIC)
    if not metric:
        return Check("filter_groups", FAIL, f"{FILTER_METRIC} is not set: verl refuses group filtering without it "
                     "(reward = the reward function's score)")
    return Check("filter_groups", PASS, f"DAPO dynamic sampling on (metric {metric}): verl 0.9's V1 replay buffer "
                 "evicts groups whose rewards all agree and refills them with fresh prompts (it ignores "
                 "max_num_gen_batches, so there is no cap on refills)")


def train_order_check(values: Mapping[str, Any], exported: str | None, configured: str) -> Check:
    """Whether the engine reads the train file in the order it was written for.

    Args:
        values: Effective config values (composed, or parsed from the overrides; an absent ``data.shuffle`` is
            verl's default, true in both dialects).
        exported: ``train_order`` of the exported dataset (None: an export from before the order was recorded,
            which is in time order).
        configured: ``soft_grpo.dataset.train_order`` now.
    """
    shuffled = values.get(base.SHUFFLE_KEY, True) is not False
    exported = exported or "time"
    fix_export = "re-export with `python main.py stage2 --market <MKT> --dataset-only`"
    if exported == "sides_balanced" and shuffled:
        return Check("train_order", FAIL, f"stage2_train.parquet is ordered sides_balanced, but {base.SHUFFLE_KEY}="
                     "true draws its rows at random, so the steps would not stay balanced; remove data.shuffle from "
                     "the engine's args / args_overlay / --override (the plan sets it to False)")
    if exported != configured:
        return Check("train_order", WARN, f"the exported train file is in {exported} order, "
                     f"soft_grpo.dataset.train_order is now {configured}; {fix_export}")
    if exported == "time" and not shuffled:
        return Check("train_order", WARN, f"{base.SHUFFLE_KEY}=false reads the time-ordered train rows in time "
                     "order: each step's prompts come from one stretch of the market and follow its drift; set "
                     "data.shuffle=true or soft_grpo.dataset.train_order: sides_balanced")
    if exported == "sides_balanced":
        return Check("train_order", PASS, "stage2_train.parquet is ordered sides_balanced and read in order "
                     f"({base.SHUFFLE_KEY}=false): every batch holds as many BUY-won as SELL-won rows")
    return Check("train_order", PASS, f"time-ordered rows, drawn at random ({base.SHUFFLE_KEY}=true)")
