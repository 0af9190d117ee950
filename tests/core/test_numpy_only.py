"""The numpy-only rule: ``tradelab.core`` and the reward's public names import with the standard library and numpy.

The GRPO engines load the reward under their own interpreter, which may have numpy and nothing else tradelab uses.
A meta-path finder in a fresh interpreter refuses every top-level module that is neither the standard library, numpy
nor tradelab, so a new import of pydantic, yaml, pandas, torch, ... anywhere under the core fails here.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import tradelab.core

CORE_MODULES = sorted(f"tradelab.core.{m.name}" for m in pkgutil.iter_modules(tradelab.core.__path__))

SCRIPT = r"""
import importlib, json, sys

ALLOWED = set(sys.stdlib_module_names) | {"numpy", "tradelab"}
ALREADY = set(sys.modules)


class NumpyOnly:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in ALLOWED and name not in ALREADY:
            raise ImportError(f"{name} is imported, but the numpy-only core may import only the stdlib and numpy")
        return None


sys.meta_path.insert(0, NumpyOnly())
for module in json.loads(sys.argv[1]):
    importlib.import_module(module)
from tradelab.advisor.parse import parse_advice
from tradelab.grpo.reward import compute_score

advice = parse_advice("BUY | 0.7 | up")
assert advice.parse_ok and advice.action == "BUY", advice
print(json.dumps(compute_score("tradelab/NQ", "BUY | 0.7 | up", sys.argv[2])))
"""


def _truth() -> str:
    closes = [18000.0 + 4.0 * i for i in range(1, 7)]
    return json.dumps({
        "forward": {"open": [c - 2.0 for c in closes], "high": [c + 1.0 for c in closes],
                    "low": [c - 3.0 for c in closes], "close": closes, "atr": 4.0, "horizon_bars": 6},
        "contract": {"tick_size": 0.25, "tick_value": 5.0, "point_value": 20.0, "commission_per_side": 2.0,
                     "slippage_ticks": 1.0},
        "rules": {"stop_atr": 1.5, "target_r": 2.0, "trail_atr": 1.0, "be_buffer_ticks": 1.0},
        "position": None, "allowed_actions": ["HOLD", "BUY", "SELL"], "decision_close": 18000.0,
        "flatten_after_bars": None,
    })


def test_core_and_the_reward_import_with_only_numpy() -> None:
    assert {"tradelab.core.reward", "tradelab.core.parse", "tradelab.core.tradesim", "tradelab.core.records",
            "tradelab.core.ground_truth"} <= set(CORE_MODULES)
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CORE_MODULES), _truth()], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    score = json.loads(done.stdout)
    assert score["action_valid"] == 1.0 and score["outcome_r"] > 0.0, score


def test_the_blocker_refuses_a_third_party_import() -> None:
    """The check itself can fail: the same finder stops a module the core must not need."""
    code = SCRIPT.split("sys.meta_path.insert(0, NumpyOnly())")[0] + "sys.meta_path.insert(0, NumpyOnly())\nimport yaml\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "numpy-only core" in done.stderr
