"""No bench rots: every ``bench/*.py`` runs at its tiny ``--smoke`` size and prints its headline ``key=value`` last.

The figures of a smoke run mean nothing (sizes too small to time); what is checked is that the script still runs
against the current code and still ends with its headline line, as ``make bench`` and the README's table expect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))
HEADLINE = re.compile(r"^[a-z][a-z0-9_.]*=\S+$")
"""``name=value``: a bench's last line (``generate_bars_per_s=5899684``, ``cuda_available=0`` on a CPU machine)."""


def test_every_bench_is_covered() -> None:
    assert len(SCRIPTS) >= 11 and all(path.name != "__init__.py" for path in SCRIPTS)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_the_bench_runs_at_its_smoke_size_and_ends_with_its_headline(script: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=840, check=False, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, f"{script.name} --smoke failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and HEADLINE.match(lines[-1]), f"{script.name}: last line {lines[-1:]!r} is not key=value"


def _learning_bench():
    """``bench/learning.py`` as a module (benches are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_bench", BENCH / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_learning_bench_keeps_a_workspace_that_holds_its_market_so_a_killed_run_resumes(tmp_path: Path) -> None:
    from argparse import Namespace

    from tradelab import stages

    bench = _learning_bench()
    args = Namespace(data_seed=5, days=2)
    assert not bench.holds_market(tmp_path, 0.3, args)
    stages.generate_data(tmp_path, "NQ", days=2, seed=5, edge=0.3)
    assert bench.holds_market(tmp_path, 0.3, args)
    assert not bench.holds_market(tmp_path, 0.2, args)
    assert not bench.holds_market(tmp_path, 0.3, Namespace(data_seed=6, days=2))
    assert not bench.holds_market(tmp_path, 0.3, Namespace(data_seed=5, days=3))
