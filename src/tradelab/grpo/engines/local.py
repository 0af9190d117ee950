"""The ``local`` engine: the in-process trainer of :mod:`tradelab.grpo.local` (LoRA on the Stage 1 adapter).

It has no launch plan: it trains in this process, exports its adapter to ``soft_grpo/adapter/`` and records its own
``stage2.runs`` entry. :mod:`tradelab.grpo.local` (torch) is imported only when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tradelab.config import TradelabConfig
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine, RunRequest
from tradelab.paths import Workspace
from tradelab.results import Launch

if TYPE_CHECKING:
    from tradelab.manifest_schema import RunRecord

ENGINE = "local"
RUN_PREFIX = "local_"
"""A local run's folder under ``soft_grpo/``: ``local_<UTC>``."""
RUN_MANIFEST = "manifest.json"
"""The run folder's own manifest (:class:`tradelab.grpo.local.runlog.RunRecorder`), written when the run starts."""
CHECKPOINT_GLOB = "checkpoints/step_*/trainer_state.pt"
"""A checkpoint's state file inside a run folder, as :func:`tradelab.grpo.local.checkpoints.save_checkpoint` lays it out
(each checkpoint folder appears whole: it is staged and renamed into place)."""


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


    def interrupted_checkpoint(self, ws: Workspace, market: str, record: RunRecord) -> Path | None:
        """The newest checkpoint of the run folder the killed attempt ``record`` created (the newest ``local_*``
        folder that started at or after the attempt), or None when it saved none."""
        if record.started_at is None:
            return None
        for folder in sorted(ws.soft_grpo_output_dir(market).glob(f"{RUN_PREFIX}*"), reverse=True):
            started = _run_started(folder)
            if started is None or started < record.started_at:
                continue
            found = sorted(folder.glob(CHECKPOINT_GLOB))
            return found[-1].parent if found else None
        return None


def _run_started(folder: Path) -> str | None:
    """``started_at`` of a local run folder's manifest, or None when it has none that reads."""
    import json

    try:
        started = json.loads((folder / RUN_MANIFEST).read_text(encoding="utf-8")).get("started_at")
    except (OSError, ValueError, AttributeError):
        return None
    return started if isinstance(started, str) else None


ENGINE_SPEC = LocalEngine()
