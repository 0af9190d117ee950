"""``scripts/pod_setup.sh`` (``make pod``) on a CPU machine, as far as CUDA allows.

The repository is a local git clone of the verbatim SofT-GRPO subset beside the checkout (``shared/upstream``); the
clone, the repository check and the config change run for real, the pip steps are checked as the plan ``--plan``
prints. Without ``--plan`` the script must refuse, clearly and before touching anything, since no GPU is visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT / "scripts" / "pod_setup.sh"
UPSTREAM = next((p / "shared" / "upstream" / "SofT-GRPO" for p in PROJECT.parents
                 if (p / "shared" / "upstream" / "SofT-GRPO" / "verl-0.4.x").is_dir()), None)


def _upstream_clone(tmp_path: Path) -> Path:
    """A git repository holding the upstream subset, to clone from as the pod clones GitHub's."""
    if UPSTREAM is None:
        pytest.skip("shared/upstream/SofT-GRPO is not beside the checkout")
    origin = tmp_path / "origin"
    shutil.copytree(UPSTREAM, origin)
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "upstream subset"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return origin


def _run(root: Path, origin: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOFT_GRPO_REPO_ROOT"}
    env.update(SOFT_GRPO_REPO_URL=str(origin), TRADELAB_PYTHON=sys.executable,
               PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "nvidia-smi").exists()))
    return subprocess.run(["bash", str(SCRIPT), "--root", str(root), "--market", "NQ", *extra], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_without_cuda_it_refuses_before_touching_anything(tmp_path: Path) -> None:
    origin = _upstream_clone(tmp_path)
    root = tmp_path / "ws"
    done = _run(root, origin)
    assert done.returncode == 3
    assert "refusing: no CUDA GPU is visible" in done.stderr and "--plan" in done.stderr
    assert not (root / "SofT-GRPO-master-main").exists() and not (root / "config").exists()


def test_the_plan_clones_checks_points_runner_python_and_is_idempotent(tmp_path: Path) -> None:
    origin = _upstream_clone(tmp_path)
    root = tmp_path / "ws"
    first = _run(root, origin, "--plan")
    assert first.returncode == 0, first.stdout + first.stderr
    repo = root / "SofT-GRPO-master-main"
    assert (repo / ".git").is_dir() and (repo / "verl-0.4.x" / "setup.py").is_file()
    assert "has every file the soft-grpo engine needs" in first.stdout
    plan = [line.removeprefix("pod_setup: plan: ") for line in first.stdout.splitlines() if "plan: " in line]
    fork_python = str(root / ".venv-fork" / "bin" / "python")
    assert plan[0].endswith(f"-m venv {root / '.venv-fork'}")
    pips = [step for step in plan if " -m pip install " in step]
    assert all(step.startswith(f"{fork_python} -m pip install ") for step in pips)
    assert any("torch==2.6.0" in step and "transformers==4.51.1" in step for step in pips)
    assert any("flash_attn==2.7.3 --no-build-isolation" in step for step in pips)
    assert any(step.endswith(f"-e {repo}/verl-0.4.x") for step in pips)
    assert any(step.endswith(f"-e {repo}/Soft-Thinking+noise+loss-main/sglang_soft_thinking_pkg/python[all]")
               for step in pips)
    assert plan[-1].endswith("preflight --market NQ --engine soft-grpo")
    config_file = root / "config" / "phase3_soft_grpo.yaml"
    assert yaml.safe_load(config_file.read_text())["runner"]["python"] == fork_python
    assert "# Interpreter for the engine" in config_file.read_text(), "the comment above every key is kept"
    launch = first.stdout.splitlines()[-1]
    assert launch == (f"SOFT_GRPO_REPO_ROOT={repo} {sys.executable} {PROJECT / 'main.py'} --root {root} stage2 "
                      "--market NQ --engine soft-grpo")
    from tradelab.config import load_config

    assert load_config(root / "config").soft_grpo.runner.python == fork_python, "the edited config still loads"

    before = config_file.read_bytes()
    second = _run(root, origin, "--plan")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already cloned" in second.stdout and f"runner.python already {fork_python}" in second.stdout
    assert config_file.read_bytes() == before and second.stdout.splitlines()[-1] == launch
