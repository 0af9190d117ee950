"""A local run's checkpoints: adapter, optimizer, scheduler, RNG states and counters.

Each lives under ``<run_dir>/checkpoints/step_000010/{adapter/, trainer_state.pt, state.json}``, written to a
temporary folder and renamed into place. ``trainer_state.pt`` holds only tensors and plain containers and is read
with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tradelab.errors import DataError
from tradelab.fileio import atomic_write_json, staged_dir

STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as tensors and plain containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(_as_tuple(states["python"]))
    npy = states["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(
    run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> Path:
    """Write the checkpoint for ``step`` and return its folder.

    Args:
        run_dir: The run directory.
        step: Steps completed.
        model: The PEFT model (its adapter is saved).
        optimizer: Optimizer whose state is saved.
        scheduler: LR scheduler whose state is saved.
        state: JSON-able counters (step, skipped steps, config hash, ...), also written to ``state.json``.
    """
    parent = run_dir / CHECKPOINTS
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / checkpoint_name(step)
    with staged_dir(final) as tmp:
        model.save_pretrained(tmp / "adapter")
        payload = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": capture_rng(),
                   "state": state}
        torch.save(payload, tmp / STATE_FILE)
        atomic_write_json(tmp / "state.json", state)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from either a checkpoint folder or a run directory (its latest checkpoint).

    Raises:
        DataError: No checkpoint is found there.
    """
    path = Path(path).expanduser().resolve()
    if (path / STATE_FILE).is_file():
        return path
    found = sorted((path / CHECKPOINTS).glob("step_*/" + STATE_FILE)) if path.is_dir() else []
    if not found:
        raise DataError(
            f"{path}: no checkpoint found (expected {STATE_FILE} here or {CHECKPOINTS}/step_*/ below); pass a "
            f"checkpoint folder or a local run directory that saved one (run.checkpoint_every > 0)"
        )
    return found[-1].parent


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The optimizer/scheduler/RNG payload of a checkpoint folder."""
    try:
        return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise DataError(f"{checkpoint / STATE_FILE}: cannot read the checkpoint ({exc}); pick another one") from None
