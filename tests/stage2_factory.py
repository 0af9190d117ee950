"""Builders for Stage 2 tests: experience records (ARCHITECTURE.md §6), a Stage 1 manifest and a fake SofT-GRPO tree.

Records are written directly, so the Stage 2 tests do not need a Stage 1 run. Forward windows are deterministic:
``"up"`` rises a few points per bar (a long hits its target), ``"down"`` falls, ``"flat"`` chops inside the stops.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig, load_config
from tradelab.fileio import append_jsonl
from tradelab.grpo.engines.soft_grpo import REQUIRED_CONTENT, REQUIRED_FILES
from tradelab.manifest import merge_stage1
from tradelab.paths import Workspace

CONTRACT = {"tick_size": 0.25, "tick_value": 5.0, "point_value": 20.0, "commission_per_side": 2.0,
            "slippage_ticks": 1.0}
RULES = {"stop_atr": 1.5, "target_r": 2.0, "trail_atr": 1.0, "be_buffer_ticks": 1, "flatten_time": "15:55",
         "flatten_after_bars": None}
HORIZON_BARS = 30
ATR_POINTS = 4.0
START = datetime.fromisoformat("2026-03-02T09:40:00-05:00")


def forward_window(close: float, trend: str, horizon: int = HORIZON_BARS) -> dict[str, Any]:
    """A forward window starting after a decision at ``close``; on the 0.25 tick grid, never equal to ``close``."""
    step = {"up": 1.5, "down": -1.5, "flat": 0.0}[trend]
    opens, highs, lows, closes = [], [], [], []
    for k in range(horizon):
        wiggle = 0.5 if (trend == "flat" and k % 2) else 0.0
        o = close + step * (k + 1) + 0.75 + wiggle
        c = o + step / 2
        opens.append(o)
        closes.append(c)
        highs.append(max(o, c) + 0.5)
        lows.append(min(o, c) - 0.5)
    return {"horizon_bars": horizon, "open": opens, "high": highs, "low": lows, "close": closes,
            "atr": ATR_POINTS}


def make_record(index: int, *, market: str = "NQ", trend: str = "up", outcome: bool = True, pnl: float = 100.0,
                reward: float = 0.5, position: dict[str, Any] | None = None,
                allowed: list[str] | None = None) -> dict[str, Any]:
    """One experience record at minute ``index`` after :data:`START` (five minutes apart)."""
    stamp = (START + timedelta(minutes=5 * index)).isoformat()
    close = 18000.0 + index * 0.25
    allowed = allowed or ["HOLD", "BUY", "SELL"]
    pos = position or {"side": "flat", "entry_price": None, "stop": None, "target": None, "trail_on": False,
                       "unrealized_pnl": 0.0, "bars_in_trade": 0}
    context = {"market": market, "bar_index": 100 + index, "timestamp": stamp, "close": close, "atr": ATR_POINTS,
               "trend": trend, "momentum": 55.0, "volatility": "normal", "allowed_actions": allowed}
    user = (f"{market} {stamp}: close {close:.2f}, ATR {ATR_POINTS:.2f}, trend {trend}, RSI 55.0. "
            f"Position: {pos['side']}. Allowed: {', '.join(allowed)}.")
    return {
        "schema_version": 1, "id": f"run1-{index:07d}", "market": market, "run_id": "run1",
        "bar_index": 100 + index, "timestamp": stamp,
        "prompt": [{"role": "system", "content": "You advise a futures trader. Answer: ACTION | confidence | reason"},
                   {"role": "user", "content": user}],
        "response": "BUY | 0.70 | trend", "advice": {"action": "BUY", "action_id": 1, "confidence": 0.7,
                                                     "reason": "trend", "parse_ok": True, "error": None},
        "action_taken": {"action": "BUY", "action_id": 1}, "allowed_actions": allowed, "position": pos,
        "account": {"balance": 50000.0, "peak": 50000.0, "drawdown_buffer": 2500.0, "consecutive_losses": 0,
                    "win_rate": 0.0, "daily_pnl": 0.0},
        "market_context": context, "forward": forward_window(close, trend), "contract": dict(CONTRACT),
        "rules": dict(RULES),
        "outcome": ({"pnl": pnl, "r_multiple": pnl / 120.0, "exit_reason": "target", "bars_held": 5,
                     "reward": reward} if outcome else None),
        "adapter": None,
    }


def write_experience(root: Path, records: list[dict[str, Any]], market: str = "NQ",
                     extra_lines: list[str] | None = None) -> Path:
    """Append ``records`` (then raw ``extra_lines``) to the market's experience file."""
    path = Workspace.at(root).experience_path(market)
    append_jsonl(path, records)
    if extra_lines:
        with open(path, "a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in extra_lines)
    return path


def fake_stage1(root: Path, market: str = "NQ", rank: int = 8) -> dict[str, Path]:
    """A completed Stage 1 manifest pointing at a placeholder base model and adapter (files only, no weights)."""
    ws = Workspace.at(root)
    base = ws.root / "models" / "base" / "fake-base"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    (base / "model.safetensors").write_bytes(b"stand-in weights")
    adapter = ws.stage1_lora_dir(market)
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 16, "peft_type": "LORA"}),
                                                 encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"stand-in adapter")
    merge_stage1(root, market, {"status": "completed", "base_model": {"name": "fake", "local_path": str(base),
                                                                      "smoke_test_model": True},
                                "lora_adapter_path": str(adapter)})
    return {"base": base, "adapter": adapter}


def fake_soft_grpo_repo(path: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A directory with the SofT-GRPO file set ARCHITECTURE.md §9 lists, minus ``skip``."""
    for rel in REQUIRED_FILES:
        if rel in skip:
            continue
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"# stand-in\n{REQUIRED_CONTENT.get(rel, '')}\n", encoding="utf-8")
    if "script" not in skip:
        (path / "SofT-GRPO-deepscaler-8k.sh").write_text("python3 -m verl.trainer.main_ppo \"$@\"\n",
                                                         encoding="utf-8")
    return path


STANDIN_SOURCE = '''
"""STAND-IN launch interpreter for tradelab's Stage 2 tests (never a real engine).

As preflight's probe it answers like a GPU machine (CUDA, 8 GPUs, verl STANDIN_VERL_VERSION, default 0.9.1);
compose requests go to the real interpreter. As the engine (`-m <module> ...`) it prints a line and exits with
STANDIN_EXIT (default 3); with 0 it leaves a verl-style checkpoint under trainer.default_local_dir. As
`-m verl.model_merger` it writes a lora_adapter folder into --target_dir.
"""
import json
import os
import sys

args = sys.argv[1:]
if args and args[0].endswith("artifact_probe.py"):
    os.execv(sys.executable, [sys.executable, *args])
if args and args[0].endswith("env_probe.py"):
    if args[args.index("--out") + 2] == "compose":
        os.execv(sys.executable, [sys.executable, *args])
    version = os.environ.get("STANDIN_VERL_VERSION", "0.9.1")
    ok = {"importable": True, "version": "stand-in", "file": "/stand-in"}
    probe = {"python": sys.argv[0], "python_version": "3.11", "cwd": os.getcwd(), "pythonpath": "",
             "verl": {"importable": True, "version": version, "file": "/stand-in/verl/__init__.py"},
             "sglang": ok, "vllm": ok, "flash_attn": ok, "flash_attn_cross_entropy": {"importable": True},
             "sglang_soft_thinking": {"found": os.environ.get("STANDIN_SOFT_SGLANG") == "1",
                                      "file": "/stand-in/sglang/srt/server_args.py"},
             "torch": {"importable": True, "version": "stand-in",
                       "cuda_available": os.environ.get("STANDIN_CUDA", "1") == "1", "device_count": 8},
             "reward": ok}
    with open(args[args.index("--out") + 1], "w") as fh:
        json.dump(probe, fh)
    sys.exit(0)
if args[:2] == ["-m", "verl.model_merger"]:
    target = os.path.join(args[args.index("--target_dir") + 1], "lora_adapter")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "adapter_config.json"), "w") as fh:
        json.dump({"r": 8, "lora_alpha": 16, "peft_type": "LORA", "target_modules": ["q_proj"]}, fh)
    weights = os.path.join(target, "adapter_model.safetensors")
    if os.environ.get("STANDIN_BAD_ADAPTER") == "1":
        with open(weights, "wb") as fh:
            fh.write(b"stand-in refined adapter")
    else:
        import torch
        from safetensors.torch import save_file

        prefix = "base_model.model.model.layers.0.self_attn.q_proj"
        save_file({f"{prefix}.lora_A.weight": torch.zeros(8, 32), f"{prefix}.lora_B.weight": torch.zeros(32, 8)},
                  weights)
    print("stand-in merger wrote", target)
    sys.exit(0)
code = int(os.environ.get("STANDIN_EXIT", "3"))
print(f"stand-in engine {args[1] if len(args) > 1 else '?'}: {len(args) - 2} overrides, exiting {code}")
if code == 0:
    local = next(a.split("=", 1)[1] for a in args if a.startswith("trainer.default_local_dir="))
    os.makedirs(os.path.join(local, "global_step_2", "actor"), exist_ok=True)
    with open(os.path.join(local, "latest_checkpointed_iteration.txt"), "w") as fh:
        fh.write("2")
    # Like the fork with hf_model in checkpoint.contents: the actor's full weights as a Hugging Face folder.
    if os.environ.get("STANDIN_HF_MODEL") and any("hf_model" in a for a in args):
        import shutil

        shutil.copytree(os.environ["STANDIN_HF_MODEL"], os.path.join(local, "global_step_2", "actor", "huggingface"),
                        copy_function=shutil.copy)
sys.exit(code)
'''


def write_standin_python(folder: Path) -> Path:
    """An executable stand-in interpreter (see :data:`STANDIN_SOURCE`), run by this test interpreter."""
    import sys

    path = folder / "standin_python"
    path.write_text(f"#!{sys.executable}\n{STANDIN_SOURCE}", encoding="utf-8")
    path.chmod(0o755)
    return path


def mixed_records(count: int = 40) -> list[dict]:
    """Up / down / flat windows in turn; odd ones won (pnl 100), even ones lost (pnl -50, reward -0.4)."""
    return [
        make_record(i, trend=("up", "down", "flat")[i % 3], pnl=100.0 if i % 2 else -50.0,
                    reward=0.5 if i % 2 else -0.4)
        for i in range(count)
    ]


def with_overrides(profile: str | None = None, **dotted: object) -> TradelabConfig:
    """The config of run profile ``profile`` (None: the default) with ``soft_grpo`` keys overridden (``a__b`` means
    ``a.b``).

    The artifact comparison is off unless asked for: :func:`fake_stage1`'s base model has no real weights.
    """
    dotted.setdefault("preflight__check_artifacts", False)
    return load_config(profile=profile, overrides={f"soft_grpo.{k.replace('__', '.')}": v for k, v in dotted.items()})
