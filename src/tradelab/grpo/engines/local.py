"""The ``local`` engine: the in-process trainer of :mod:`tradelab.grpo.local` (LoRA on the Stage 1 adapter).

It has no launch plan: it trains in this process, exports its adapter to ``soft_grpo/adapter/`` itself and records
its own ``stage2.runs`` entry. :mod:`tradelab.grpo.local` (torch) is imported only when a run starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.grpo.engines.interface import Engine

ENGINE = "local"


class LocalEngine(Engine):
    """The in-process engine: no plan, no prepare step, no engine-specific preflight checks."""

    name = ENGINE
    external = False
    output_key = "adapter_path"

    def call_line(self, mode: str | None, test_mode: bool, resume_from: str | Path | None) -> str:
        """The call a run makes, shown by ``--dry-run`` and recorded as the command."""
        return (f"tradelab.grpo.local.train.train_local(mode={mode!r}, test_mode={test_mode}, "
                f"resume_from={resume_from!r})")

    def train(self, root: str | Path, market: str, config: TradelabConfig, *, mode: str | None, test_mode: bool,
              resume_from: str | Path | None, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        """Train in-process; the trainer exports the adapter and records the run."""
        from tradelab.grpo.local.train import train_local

        return train_local(root, market, config, mode=mode, test_mode=test_mode, resume_from=resume_from,
                           progress=progress)


ENGINE_SPEC = LocalEngine()
