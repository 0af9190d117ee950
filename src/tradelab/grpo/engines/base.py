"""What both external engines share: the launch plan, placeholders, override merging and Stage 1 inputs.

A :class:`LaunchPlan` is the exact command (an argv list, never a shell string), working directory and environment
overrides of one launch. Preflight probes the environment the plan describes, ``--dry-run`` shows it, and the
runner executes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tradelab
from tradelab.config import TradelabConfig
from tradelab.config.soft_grpo_schema import PLACEHOLDERS, EngineConfig
from tradelab.errors import ConfigError
from tradelab.grpo.hydra_quote import hydra_quote
from tradelab.manifest import load_manifest, stage1_of
from tradelab.paths import Workspace

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MISSING_PREFIX = "MISSING:"
"""Placeholder values that could not be resolved start with this (preflight fails on them; dry-run shows them)."""
REWARD_FUNCTION = "compute_score"


@dataclass(frozen=True)
class Stage1Inputs:
    """Where Stage 1 left the base model and its adapter (from the manifest), with the adapter's LoRA shape."""

    base_model: Path | None
    adapter: Path | None
    lora_rank: int | None
    lora_alpha: float | None
    manifest_found: bool
    """The manifest has a ``stage1`` section."""


@dataclass
class LaunchPlan:
    """One engine launch, fully resolved.

    Attributes:
        engine: "verl" or "soft-grpo".
        dialect: "pypi" (verl >= 0.9) or "fork" (the SofT-GRPO verl 0.4.x).
        python: The launch interpreter.
        argv: The exact command.
        cwd: Working directory of the launch.
        env_overrides: Variables set on top of the current environment.
        overrides: The final Hydra overrides (placeholders filled, test overrides merged).
        output_dir: Engine outputs (checkpoints under ``checkpoints/``).
        tensorboard_dir: Absolute TENSORBOARD_DIR.
        model_path: Actor model directory the engine loads.
        adapter_path: Stage 1 adapter (LoRA start for verl; merged into model_path for the fork).
        repo_root: SofT-GRPO repository (fork only).
        mode: "python" or "script".
        missing: Placeholders that could not be resolved, with why.
        notes: Facts the caller should show (e.g. the merged model will be rebuilt).
    """

    engine: str
    dialect: str
    python: str
    argv: list[str]
    cwd: Path
    env_overrides: dict[str, str]
    overrides: list[str]
    output_dir: Path
    tensorboard_dir: Path
    model_path: Path | None
    adapter_path: Path | None
    repo_root: Path | None
    mode: str
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """The full environment of the launch: the current one plus :attr:`env_overrides`."""
        return {**os.environ, **self.env_overrides}

    def run_json(
        self, script: Path, args: list[str], *, timeout_s: int, what: str
    ) -> tuple[dict[str, Any] | None, str]:
        """Run ``script --out <file> *args`` under this launch's interpreter, environment and cwd.

        Preflight's probes use it, so they see exactly what the engine will see.

        Args:
            script: A Python file that writes its JSON result to ``--out``.
            args: Further arguments.
            timeout_s: Seconds before the run counts as hung.
            what: What is running, for the timeout message (e.g. "the probe").

        Returns:
            ``(result, "")``, or ``(None, error)`` naming what went wrong.
        """
        import tempfile

        self.cwd.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tradelab_probe_") as tmp:
            out = Path(tmp) / "out.json"
            argv = [self.python, str(script), "--out", str(out), *args]
            try:
                done = subprocess.run(argv, cwd=self.cwd, env=self.environment(), capture_output=True, text=True,
                                      timeout=timeout_s, check=False)
            except FileNotFoundError:
                return None, f"interpreter {self.python!r} not found"
            except OSError as exc:
                return None, f"interpreter {self.python!r} cannot run: {exc}"
            except subprocess.TimeoutExpired:
                return None, f"{what} did not finish within {timeout_s}s"
            if done.returncode != 0 or not out.is_file():
                return None, f"exit code {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}"
            return json.loads(out.read_text(encoding="utf-8")), ""

    def command_line(self) -> str:
        """The argv as one copy-pasteable, shell-quoted line (for display only; launches use the list)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env_overrides.items()))
        return f"cd {shlex.quote(str(self.cwd))} && {env} {shlex.join(self.argv)}".strip()

    def launch_script(self) -> str:
        """A bash script that reproduces the launch: the environment overrides, ``cd``, then the command."""
        lines = ["#!/usr/bin/env bash", f"# tradelab Stage 2 launch ({self.engine}); run it with bash on the GPU "
                 "machine or hand it to a scheduler.", "set -euo pipefail"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env_overrides.items())]
        lines.append(f"cd {shlex.quote(str(self.cwd))}")
        lines.append("exec " + " \\\n  ".join(shlex.quote(a) for a in self.argv))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        return {
            "engine": self.engine, "dialect": self.dialect, "python": self.python, "argv": list(self.argv),
            "cwd": str(self.cwd), "env_overrides": dict(self.env_overrides), "overrides": list(self.overrides),
            "output_dir": str(self.output_dir), "tensorboard_dir": str(self.tensorboard_dir),
            "model_path": str(self.model_path) if self.model_path else None,
            "adapter_path": str(self.adapter_path) if self.adapter_path else None,
            "repo_root": str(self.repo_root) if self.repo_root else None, "mode": self.mode,
            "missing": dict(self.missing), "notes": list(self.notes), "command_line": self.command_line(),
        }


def project_src() -> Path:
    """The directory holding the ``tradelab`` package (put on the engine's PYTHONPATH)."""
    return Path(tradelab.__file__).resolve().parent.parent


def reward_path() -> Path:
    """The file verl loads ``compute_score`` from (by path)."""
    return project_src() / "tradelab" / "grpo" / "reward.py"


def resolve_python(root: Path, config: TradelabConfig, override: str | None) -> str:
    """The launch interpreter: ``override``, else ``runner.python``, else the interpreter running tradelab.

    A value with a path separator that is relative is resolved against the workspace root; a bare name
    (``python3``) is kept for PATH lookup.
    """
    value = override or config.soft_grpo.runner.python
    if not value:
        return sys.executable
    expanded = os.path.expanduser(value)
    if os.sep in expanded and not os.path.isabs(expanded):
        return str((root / expanded).resolve())
    return expanded


def resolve_repo_root(root: Path, config: TradelabConfig) -> Path:
    """The SofT-GRPO repository.

    ``$SOFT_GRPO_REPO_ROOT``, when set, is taken as a shell user means it: a relative value is resolved against the
    current directory. Otherwise ``soft_grpo.repo_root`` from the config, where a relative value is resolved
    against the workspace root (``--root``), like every other path in the config.
    """
    value = os.environ.get("SOFT_GRPO_REPO_ROOT")
    if value:
        return Path(os.path.expanduser(value)).resolve()
    path = Path(os.path.expanduser(config.soft_grpo.repo_root))
    return path if path.is_absolute() else (root / path)


def repo_root_source(config: TradelabConfig) -> str:
    """Where :func:`resolve_repo_root` took the path from, for messages."""
    if os.environ.get("SOFT_GRPO_REPO_ROOT"):
        return "$SOFT_GRPO_REPO_ROOT, relative to the current directory"
    return "soft_grpo.repo_root in config/phase3_soft_grpo.yaml, relative to --root"


def override_key(item: str) -> str:
    """The key a Hydra override sets (``+a.b=1`` and ``a.b=2`` both set ``a.b``)."""
    return item.split("=", 1)[0].lstrip("+~")


SHUFFLE_KEY = "data.shuffle"
"""verl's train sampler switch (both dialects): true draws the rows at random, false reads them in file order."""


def order_overrides(config: TradelabConfig) -> list[str]:
    """Overrides the exported train order needs: a ``sides_balanced`` file is read in order (``data.shuffle=False``)."""
    return [f"{SHUFFLE_KEY}=False"] if config.soft_grpo.dataset.train_order == "sides_balanced" else []


def engine_overrides(engine: Any, values: dict[str, str], name: str, *, extra: list[str] | None,
                     derived: list[str] | None = None) -> list[str]:
    """The engine's ``args``, its ``args_overlay``, then ``derived`` (from other settings), then ``extra``; later
    keys win."""
    return merge_overrides(fill(engine.args, values, f"engines.{name}.args"),
                           fill(engine.args_overlay, values, f"engines.{name}.args_overlay"), list(derived or []),
                           list(extra or []))


def merge_overrides(*layers: list[str]) -> list[str]:
    """Later layers replace earlier overrides of the same key in place; new keys are appended."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            merged[override_key(item)] = item
    return list(merged.values())


def fill(items: list[str], values: dict[str, str], where: str, *, hydra: bool = True) -> list[str]:
    """Replace ``{name}`` placeholders.

    Args:
        hydra: The items are Hydra overrides (``key=value``): when a filled-in value is not plain (a workspace path
            with ``,``, ``=``, a space or ``${``), the override's whole value is quoted per Hydra's grammar so it
            stays one literal. False for environment variables, which are passed as they are.

    Raises:
        ConfigError: An item names a placeholder that does not exist.
    """
    out = []
    for item in items:
        names = _PLACEHOLDER.findall(item)
        for name in names:
            if name not in PLACEHOLDERS:
                raise ConfigError(
                    f"config/phase3_soft_grpo.yaml: {where}: unknown placeholder {{{name}}} in {item!r}; "
                    f"use one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                )
        filled = _PLACEHOLDER.sub(lambda m: values[m.group(1)], item)
        if hydra and "=" in item and any(hydra_quote(values[n]) != values[n] for n in names):
            key, value = item.split("=", 1)
            filled = f"{key}={hydra_quote(_PLACEHOLDER.sub(lambda m: values[m.group(1)], value))}"
        out.append(filled)
    return out


def override_map(overrides: list[str]) -> dict[str, str]:
    """``key -> raw value`` of a list of overrides."""
    return {override_key(item): item.split("=", 1)[1] if "=" in item else "" for item in overrides}


def _resolve(root: Path, value: Any) -> Path | None:
    if not value:
        return None
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else root / path


def stage1_inputs(root: Path, market: str) -> Stage1Inputs:
    """Base model and adapter recorded by Stage 1, and the adapter's ``r`` / ``lora_alpha``."""
    ws = Workspace.at(root)
    manifest = load_manifest(root, market)
    stage1 = stage1_of(manifest)
    base_model = stage1.base_model if stage1 is not None else None
    base = _resolve(ws.root, base_model.local_path if base_model is not None else None)
    adapter = _resolve(ws.root, stage1.lora_adapter_path if stage1 is not None else None) or \
        ws.stage1_lora_dir(market)
    log.info("stage 2 inputs for %s: base model %s, adapter %s (manifest paths resolved against %s)", market, base,
             adapter, ws.root)
    rank = alpha = None
    config_file = adapter / "adapter_config.json"
    if config_file.is_file():
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
            rank, alpha = data.get("r"), data.get("lora_alpha")
        except ValueError:
            rank = alpha = None
    return Stage1Inputs(base, adapter, rank if isinstance(rank, int) else None,
                        alpha if isinstance(alpha, (int, float)) else None, stage1 is not None)


def visible_gpu_count() -> int:
    """GPUs this machine shows: ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L`` lines, else 0."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return len([d for d in listed.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU ")) if done.returncode == 0 else 0


def gpus_per_node(config: TradelabConfig) -> int:
    """``runner.n_gpus_per_node``, or every visible GPU when it is null (at least 1)."""
    asked = config.soft_grpo.runner.n_gpus_per_node
    return asked if asked is not None else max(1, visible_gpu_count())


def base_values(root: Path, market: str, config: TradelabConfig, engine: str) -> dict[str, str]:
    """Placeholder values common to both engines (model/adapter ones are added by each engine)."""
    ws = Workspace.at(root)
    data_dir = ws.soft_grpo_data_dir(market)
    runner = config.soft_grpo.runner
    return {
        "train_files": str(data_dir / "stage2_train.parquet"),
        "val_files": str(data_dir / "stage2_val.parquet"),
        "output_dir": str(ws.soft_grpo_output_dir(market)),
        "market": market,
        "tensorboard_dir": str(ws.soft_grpo_tensorboard_dir(market)),
        "n_gpus": str(gpus_per_node(config)),
        "nnodes": str(runner.nnodes),
        "reward_path": str(reward_path()),
        "reward_name": REWARD_FUNCTION,
        "repo_root": str(resolve_repo_root(ws.root, config)),
        "experiment_name": f"{market}_{engine.replace('-', '_')}",
    }


def missing(value: Path | None, what: str) -> str:
    """The placeholder text for an input that does not exist yet."""
    return str(value) if value is not None else f"{MISSING_PREFIX}{what}"


def launch_cwd(ws: Workspace, market: str, engine: EngineConfig, repo_root: Path | None) -> Path:
    """The working directory an engine config asks for."""
    if engine.cwd == "repo_root" and repo_root is not None:
        return repo_root
    if engine.cwd == "output_dir":
        return ws.soft_grpo_output_dir(market)
    return ws.root


def command(python: str, engine: EngineConfig, overrides: list[str], repo_root: Path | None) -> list[str]:
    """``python -m module overrides`` or ``bash script overrides`` (scripts in that repo have no shebang)."""
    if engine.mode == "python":
        return [python, "-m", engine.module, *overrides]
    script = Path(os.path.expanduser(str(engine.script)))
    if not script.is_absolute() and repo_root is not None:
        script = repo_root / script
    return ["bash", str(script), *overrides]


def pythonpath(*front: Path) -> str:
    """``front`` entries, then the current PYTHONPATH (deduplicated, order kept)."""
    parts = [str(p) for p in front] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def engine_env(engine: EngineConfig, values: dict[str, str], where: str) -> dict[str, str]:
    """The engine's ``env`` mapping with placeholders filled."""
    filled = fill([f"{k}={v}" for k, v in engine.env.items()], values, where, hydra=False)
    return dict(item.split("=", 1) for item in filled)


def assemble_plan(
    ws: Workspace, market: str, config: TradelabConfig, *, engine_name: str, key: str, dialect: str,
    values: dict[str, str], python: str | None, extra_overrides: list[str] | None,
    repo_root: Path | None, pythonpath_front: tuple[Path, ...], model_path: Path | None, adapter_path: Path | None,
) -> LaunchPlan:
    """The launch plan both engines share once their placeholder ``values`` are known.

    Args:
        key: The engine's key under ``soft_grpo.engines`` (``verl`` or ``soft_grpo``).
        pythonpath_front: Folders put before the project's ``src/`` on the engine's PYTHONPATH.
    """
    engine = getattr(config.soft_grpo.engines, key)
    overrides = engine_overrides(engine, values, key, extra=extra_overrides, derived=order_overrides(config))
    launch_python = resolve_python(ws.root, config, python)
    env_overrides = engine_env(engine, values, f"engines.{key}.env")
    env_overrides["PYTHONPATH"] = pythonpath(*pythonpath_front, project_src())
    env_overrides["TENSORBOARD_DIR"] = values["tensorboard_dir"]
    plan = LaunchPlan(
        engine=engine_name, dialect=dialect, python=launch_python,
        argv=command(launch_python, engine, overrides, repo_root),
        cwd=launch_cwd(ws, market, engine, repo_root), env_overrides=env_overrides, overrides=overrides,
        output_dir=ws.soft_grpo_output_dir(market), tensorboard_dir=ws.soft_grpo_tensorboard_dir(market),
        model_path=model_path, adapter_path=adapter_path, repo_root=repo_root, mode=engine.mode,
    )
    plan.missing = {k: v for k, v in values.items() if v.startswith(MISSING_PREFIX)}
    return plan
