"""The ``local`` engine: the in-process trainer of :mod:`tradelab.grpo.local` (LoRA on the Stage 1 adapter).

It has no launch plan: it trains in this process, exports its adapter to ``soft_grpo/adapter/`` and records its own
``stage2.runs`` entry. :mod:`tradelab.grpo.local` (torch) is imported only when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradelab.config import TradelabConfig
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine, RunRequest
from tradelab.paths import Workspace
from tradelab.results import Launch

if TYPE_CHECKING:
    from tradelab.manifest_schema import RunRecord

ENGINE = "local"


class LocalEngine(Engine):
    """The in-process engine: no plan, no prepare step, no engine-specific preflight checks."""

    name = ENGINE
    output_kind = "adapter"
    rollout_modes = ("soft", "discrete")

    def launch(self, plan: base.LaunchPlan | None, request: RunRequest) -> Launch:
        """The call a run makes, shown by ``--dry-run``."""
        call = (f"tradelab.grpo.local.train.train_local(mode={request.mode!r}, "
                f"resume_from={request.resume_from!r})")
        return Launch(command=[call], command_line=call)

    def run(self, ws: Workspace, market: str, config: TradelabConfig, plan: base.LaunchPlan | None,
            request: RunRequest) -> RunRecord:
        """Train in-process; the trainer exports the adapter and records the run."""
        from tradelab.grpo.local.train import train_local

        summary = train_local(ws.root, market, config, mode=request.mode,
                              resume_from=request.resume_from, progress=request.progress)
        return summary["run"]


ENGINE_SPEC = LocalEngine()
