"""STAND-IN for the GPU launch of the external Stage 2 engines (never a real trainer), for CPU tests of the loop.

Written out as an executable "launch interpreter" (:func:`write_standin_launcher`) and set as ``runner.python``, it
stands in for exactly one thing: the GPU training run. Everything around it is real: tradelab's plan, preflight,
``stage1_merged`` build, the run record, the output export and verification, the next Stage 1 and evaluation.

What it writes is what the real engines write, file for file:

- ``-m verl.trainer.main_ppo`` with PyPI verl 0.9's keys (LoRA): per saved step, ``global_step_<N>/actor/`` as
  verl 0.9.1's ``FSDPCheckpointManager.save_checkpoint`` writes it with world size 1 (the model, optimizer and
  extra-state files; ``huggingface/`` with the config, generation config and tokenizer; ``fsdp_config.json``;
  ``lora_train_meta.json``), the dataloader's ``data.pt`` and ``latest_checkpointed_iteration.txt``. The model file
  holds the PEFT model's whole state dict (``...base_layer.weight``, ``...lora_A.default.weight``) as plain tensors,
  which is what a world-size-1 FSDP checkpoint holds per tensor. The LoRA weights are moved by a small seeded step
  in place of GRPO's update.
- ``-m verl.model_merger ...``: the real ``verl.model_merger`` of the installed verl 0.9.1 runs (it writes
  ``lora_adapter/`` beside the merged model).
- ``-m verl.trainer.main_ppo`` with the SofT-GRPO fork's keys (``enable_soft_thinking``): the fork's checkpoint
  (verl 0.4.x ``FSDPCheckpointManager.save_checkpoint`` with ``hf_model`` in the contents): model, optimizer and
  extra-state files, the config, generation config and tokenizer saved into ``actor/`` itself, and ``huggingface/``
  written the fork's way (``from_config(torch_dtype=bfloat16)``, ``save_pretrained(state_dict=...)``, tokenizer)
  under the fork's own transformers 4.51.1 (``.cache/fork-env``, or ``$TRADELAB_FORK_PYTHON``). Every weight of
  ``stage1_merged/`` is moved by a small seeded step (the fork trains the full model).
- preflight's probes: ``env_probe.py probe`` answers like a GPU machine with the engine's verl (0.9.1, or the fork's
  0.4.0 with the soft-thinking sglang); ``env_probe.py compose`` and ``artifact_probe.py`` run for real.

Shapes are taken from the real trees: ``../shared/upstream/SofT-GRPO/verl-0.4.x/verl/utils/checkpoint/
fsdp_checkpoint_manager.py`` and ``trainer/ppo/ray_trainer.py`` (the fork), and the installed verl 0.9.1's
``verl/utils/checkpoint/fsdp_checkpoint_manager.py`` and ``verl/trainer/ppo/ray_trainer.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STEP_SIZE = 1e-2
"""How far the stand-in moves the trained weights (seeded noise of this scale stands in for GRPO's update)."""


def write_standin_launcher(folder: Path) -> Path:
    """An executable stand-in launch interpreter in ``folder``, run by this test interpreter.

    The fork's checkpoint is written by ``$STANDIN_FORK_PYTHON`` (the interpreter with the fork's pins).
    """
    path = folder / "standin_launcher"
    path.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------------------------- the launcher
def _overrides(args: list[str]) -> dict[str, str]:
    return {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in args if "=" in a}


def _probe(args: list[str], fork: bool) -> None:
    out = args[args.index("--out") + 1]
    ok = {"importable": True, "version": "stand-in", "file": "/stand-in"}
    probe = {"python": sys.argv[0], "python_version": "3.11", "cwd": os.getcwd(), "pythonpath": "",
             "verl": {"importable": True, "version": "0.4.0" if fork else "0.9.1",
                      "file": "/stand-in/verl/__init__.py"},
             "sglang": ok, "vllm": ok, "flash_attn": ok, "flash_attn_cross_entropy": {"importable": True},
             "sglang_soft_thinking": {"found": fork, "file": "/stand-in/sglang/srt/server_args.py"},
             "torch": {"importable": True, "version": "stand-in", "cuda_available": True, "device_count": 8},
             "reward": ok}
    with open(out, "w") as fh:
        json.dump(probe, fh)


def _steps(values: dict[str, str]) -> list[int]:
    """The global steps a run saves: every ``save_freq`` up to ``total_training_steps`` (and the last)."""
    total = int(values.get("trainer.total_training_steps", "1"))
    every = max(1, int(values.get("trainer.save_freq", "1")))
    return sorted({*range(every, total + 1, every), total})


def _moved(tensor, generator):  # type: ignore[no-untyped-def]
    import torch

    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    return (tensor.float() + STEP_SIZE * noise).to(tensor.dtype)


def _verl_checkpoint(values: dict[str, str]) -> None:
    """What verl 0.9.1 writes for an FSDP LoRA actor of world size 1 (see the module docstring)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model_path = values["actor_rollout_ref.model.path"]
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, values["actor_rollout_ref.model.lora_adapter_path"], is_trainable=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    generator = torch.Generator().manual_seed(0)
    local_dir = Path(values["trainer.default_local_dir"])
    for step in _steps(values):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.copy_(_moved(param, generator))
        actor = local_dir / f"global_step_{step}" / "actor"
        actor.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), actor / "model_world_size_1_rank_0.pt")
        torch.save({"state": {}, "param_groups": []}, actor / "optim_world_size_1_rank_0.pt")
        torch.save({"lr_scheduler": None, "rng": {"cpu": torch.get_rng_state()}},
                   actor / "extra_state_world_size_1_rank_0.pt")
        hf_dir = actor / "huggingface"
        hf_dir.mkdir(exist_ok=True)
        try:
            GenerationConfig.from_pretrained(model_path).save_pretrained(hf_dir)
        except OSError:  # verl saves it only when the model has one
            pass
        base.config.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 1, "world_size": 1}, indent=4))
        lora = model.peft_config["default"]
        (actor / "lora_train_meta.json").write_text(json.dumps(
            {"r": int(lora.r), "lora_alpha": int(lora.lora_alpha), "task_type": "CAUSAL_LM"}, indent=4))
        torch.save({"stand_in": True}, local_dir / f"global_step_{step}" / "data.pt")
        (local_dir / "latest_checkpointed_iteration.txt").write_text(str(step))
        print(f"stand-in verl 0.9: saved {actor}")


FORK_WRITER = r'''
import json, sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

assert transformers.__version__ == "4.51.1", transformers.__version__
model_path, local_dir, steps, step_size = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
tokenizer = AutoTokenizer.from_pretrained(model_path)
generator = torch.Generator().manual_seed(0)
for step in steps:
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            param.copy_((param.float() + step_size * noise).to(param.dtype))
    local_path = local_dir / f"global_step_{step}" / "actor"
    local_path.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict()
    torch.save(state_dict, local_path / "model_world_size_1_rank_0.pt")
    torch.save({"state": {}, "param_groups": []}, local_path / "optim_world_size_1_rank_0.pt")
    torch.save({"lr_scheduler": None, "rng": {"cpu": torch.get_rng_state()}},
               local_path / "extra_state_world_size_1_rank_0.pt")
    model_config = model.config
    generation_config = GenerationConfig.from_pretrained(model_config.name_or_path)
    generation_config.save_pretrained(local_path)
    model_config.save_pretrained(local_path)
    tokenizer.save_pretrained(local_path)
    hf_local_path = local_path / "huggingface"
    hf_local_path.mkdir(exist_ok=True)
    try:
        from accelerate import init_empty_weights
    except ImportError:
        import contextlib
        init_empty_weights = contextlib.nullcontext
    with init_empty_weights():
        save_model = AutoModelForCausalLM.from_config(model_config, torch_dtype=torch.bfloat16)
    save_model.to_empty(device="cpu")
    save_model.generation_config = generation_config
    save_model.save_pretrained(hf_local_path, state_dict=state_dict)
    tokenizer.save_pretrained(hf_local_path)
    torch.save({"stand_in": True}, local_dir / f"global_step_{step}" / "data.pt")
    (local_dir / "latest_checkpointed_iteration.txt").write_text(str(step))
    print(f"stand-in SofT-GRPO fork (transformers {transformers.__version__}): saved {local_path}")
'''


def _fork_checkpoint(values: dict[str, str]) -> int:
    """What the SofT-GRPO fork writes with ``hf_model`` in the actor's checkpoint contents, under its own pins."""
    import subprocess

    fork_python = os.environ.get("STANDIN_FORK_PYTHON")
    if not fork_python:
        print("stand-in fork: no STANDIN_FORK_PYTHON (the interpreter with transformers 4.51.1)")
        return 2
    assert "hf_model" in values["actor_rollout_ref.actor.checkpoint.contents"], "the run must save hf_model"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([fork_python, "-c", FORK_WRITER, values["actor_rollout_ref.model.path"],
                           values["trainer.default_local_dir"], json.dumps(_steps(values)), str(STEP_SIZE)],
                          env=env, check=False)
    return done.returncode


def main(args: list[str]) -> int:
    values = _overrides(args)
    # The fork's plan puts its verl-0.4.x first on PYTHONPATH; PyPI verl's does not.
    fork = "verl-0.4.x" in os.environ.get("PYTHONPATH", "")
    if args and args[0].endswith(("artifact_probe.py",)):
        os.execv(sys.executable, [sys.executable, *args])
    if args and args[0].endswith("env_probe.py"):
        if args[args.index("--out") + 2] == "compose":
            os.execv(sys.executable, [sys.executable, *args])
        _probe(args, fork)
        return 0
    if args[:2] == ["-m", "verl.model_merger"]:
        os.execv(sys.executable, [sys.executable, *args])
    if args[:2] == ["-m", "verl.trainer.main_ppo"]:
        if fork:
            return _fork_checkpoint(values)
        _verl_checkpoint(values)
        return 0
    print(f"stand-in launcher: unexpected command {args[:3]}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
