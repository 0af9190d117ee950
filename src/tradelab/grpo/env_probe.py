"""Launch-environment probe, run by preflight as a script under the engine's interpreter.

It is executed by file path (``<runner.python> env_probe.py --out FILE probe|compose ...``) with the PYTHONPATH and
working directory the engine will get, so it imports nothing from tradelab at module level and works on any
Python >= 3.8 with only the standard library. Results are written as JSON to ``--out`` (engines print freely to
stdout, so stdout is not parsed).

Modes:
    probe: versions and locations of verl, sglang, flash-attn's Triton cross-entropy, torch + CUDA, and whether
        ``tradelab.grpo.reward`` imports.
    compose: compose verl's ``ppo_trainer`` Hydra config with the given overrides (unknown keys fail), run
        ``verl.utils.config.validate_config`` when the dialect has it, and report the values preflight's batch
        rules need.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import traceback

VALUE_KEYS = (
    "data.train_batch_size",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.rollout.name",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.ppo_micro_batch_size",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.use_dynamic_bsz",
    "actor_rollout_ref.actor.use_kl_loss",
    "actor_rollout_ref.actor.strategy",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.ref.log_prob_micro_batch_size",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.model.use_remove_padding",
    "actor_rollout_ref.model.lora_rank",
    "actor_rollout_ref.model.lora_adapter_path",
    "actor_rollout_ref.rollout.enable_soft_thinking",
    "actor_rollout_ref.rollout.add_noise_gumbel_softmax",
    "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
    "actor_rollout_ref.actor.checkpoint.contents",
    "actor_rollout_ref.model.use_fused_kernels",
    "actor_rollout_ref.rollout.add_noise_dirichlet",
    "actor_rollout_ref.rollout.after_thinking_top_k",
    "actor_rollout_ref.rollout.val_kwargs.do_sample",
    "actor_rollout_ref.rollout.val_kwargs.temperature",
    "actor_rollout_ref.rollout.val_kwargs.top_p",
    "actor_rollout_ref.rollout.val_kwargs.top_k",
    "data.max_prompt_length",
    "data.max_response_length",
    "data.shuffle",
    "actor_rollout_ref.rollout.mode",
    "trainer.use_v1",
    "algorithm.filter_groups.enable",
    "algorithm.filter_groups.metric",
    "trainer.n_gpus_per_node",
    "trainer.nnodes",
    "trainer.save_freq",
    "reward.custom_reward_function.path",
    "reward.custom_reward_function.name",
    "custom_reward_function.path",
    "custom_reward_function.name",
    "reward_model.reward_manager",
)


def _error(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]


def _module_info(name):
    try:
        module = __import__(name, fromlist=["__name__"])
    except Exception as exc:  # noqa: BLE001 - the probe reports any import failure
        return {"importable": False, "error": _error(exc)}
    version = getattr(module, "__version__", None)
    return {"importable": True, "version": str(version) if version else None, "file": getattr(module, "__file__", None)}


def _flash_attn():
    try:
        from flash_attn.ops.triton.cross_entropy import cross_entropy_loss  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return {"importable": False, "error": _error(exc)}
    return {"importable": True}


def _sglang_soft_thinking():
    """Whether the importable sglang is the soft-thinking fork: its ServerArgs source defines enable_soft_thinking.

    Plain sglang 0.4.6.post1 has the fork's version number, so only the code tells them apart; the file is read,
    not imported (importing sglang's server pulls CUDA kernels).
    """
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        return {"found": False, "file": None}
    path = os.path.join(list(spec.submodule_search_locations)[0], "srt", "server_args.py")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        return {"found": False, "file": path, "error": _error(exc)}
    return {"found": "enable_soft_thinking" in text, "file": path}


def _torch():
    info = _module_info("torch")
    if info["importable"]:
        import torch

        try:
            info["cuda_available"] = bool(torch.cuda.is_available())
            info["device_count"] = int(torch.cuda.device_count()) if info["cuda_available"] else 0
        except Exception as exc:  # noqa: BLE001
            info["cuda_available"], info["device_count"], info["cuda_error"] = False, 0, _error(exc)
    return info


def probe():
    """Everything preflight asks of the launch environment, as a JSON-ready dict."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        result = {
            "python": sys.executable,
            "python_version": sys.version.split()[0],
            "cwd": os.getcwd(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "verl": _module_info("verl"),
            "sglang": _module_info("sglang"),
            "vllm": _module_info("vllm"),
            "flash_attn": _module_info("flash_attn"),
            "flash_attn_cross_entropy": _flash_attn(),
            "sglang_soft_thinking": _sglang_soft_thinking(),
            "torch": _torch(),
            "reward": _module_info("tradelab.grpo.reward"),
        }
    return result


def _select(cfg, key):
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, default="__absent__")
    except Exception as exc:  # noqa: BLE001 - an interpolation that cannot resolve is reported, not fatal
        return {"error": _error(exc)}
    if value == "__absent__":
        return "__absent__"
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _backend_importable(name):
    """Whether ``name`` imports here; the separate backend probe reports why when it does not."""
    return importlib.util.find_spec(name) is not None


def _validate(cfg):
    """Run verl's validate_config on the composed config.

    Its last step bounds the LoRA rank by asking vLLM itself; without vLLM installed (a CPU box in dataset-only
    mode) that step cannot run, so the rollout name is swapped on a copy and the skip is reported.
    """
    try:
        from verl.utils.config import validate_config
    except Exception as exc:  # noqa: BLE001 - the 0.4.x fork has no standalone validate_config
        return {"ran": False, "ok": None, "error": "verl.utils.config.validate_config unavailable: " + _error(exc)}
    from omegaconf import OmegaConf, open_dict

    skipped = None
    if OmegaConf.select(cfg, "actor_rollout_ref.rollout.name") == "vllm" and not _backend_importable("vllm"):
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        with open_dict(cfg):
            cfg.actor_rollout_ref.rollout.name = "tradelab-preflight-no-vllm"
        skipped = "vllm is not importable here, so vLLM's maximum LoRA rank was not checked"
    try:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy

        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as exc:  # noqa: BLE001 - validate_config signals problems with assertions and ValueErrors
        return {"ran": True, "ok": False, "error": _error(exc), "skipped": skipped}
    return {"ran": True, "ok": True, "error": None, "skipped": skipped}


def compose(overrides):
    """Compose ``ppo_trainer`` with ``overrides`` from the importable verl's own config directory."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        try:
            import verl
            from hydra import compose as hydra_compose
            from hydra import initialize_config_dir
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "stage": "import", "error": _error(exc)}
        config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
        try:
            with initialize_config_dir(config_dir=config_dir, version_base=None):
                cfg = hydra_compose(config_name="ppo_trainer", overrides=list(overrides))
        except Exception as exc:  # noqa: BLE001 - unknown keys and bad values surface here
            return {"ok": False, "stage": "compose", "error": _error(exc), "config_dir": config_dir}
        values = {key: _select(cfg, key) for key in VALUE_KEYS}
        validation = _validate(cfg)
    return {"ok": True, "stage": "done", "config_dir": config_dir, "values": values, "validate": validation,
            "verl_version": str(getattr(verl, "__version__", "")), "log_tail": sink.getvalue()[-2000:]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file the JSON result is written to")
    parser.add_argument("mode", choices=("probe", "compose"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (compose mode)")
    args = parser.parse_args(argv)
    result = probe() if args.mode == "probe" else compose(args.overrides)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
