"""bench/gpu_acceptance.py parses its arguments and imports everything it runs; on CPU it exits 0 doing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_acceptance.py"


def test_plan_imports_every_step_and_cpu_runs_nothing() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--plan", "--steps", "advisor,local", "--batch", "4"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "steps=advisor,local scale=full batch=4" in done.stdout and "cuda_available=" in done.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--steps", "advisor,train"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 2 and "unknown step(s) ['train']" in bad.stderr


def test_functions_exist_for_each_step() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    gpu_acceptance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_acceptance)
    assert set(gpu_acceptance.STEPS) == {"advisor", "stage1", "local", "verl"}
    for name in ("step_advisor", "step_stage1", "step_local", "step_verl"):
        assert callable(getattr(gpu_acceptance, name))
    with pytest.raises(SystemExit):
        gpu_acceptance.parse_args(["--batch", "0"])
