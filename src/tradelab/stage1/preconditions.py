"""What a Stage 1 run checks before it trains, and how a SIGTERM during training becomes an interrupt.

A run needs the market's bars, must not replace a completed model trained for more timesteps unless asked, and
treats SIGTERM (a pre-empted pod, ``kill``) like Ctrl-C, so both take :class:`tradelab.stage1.train.Stage1Run`'s
save-and-record path.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradelab.errors import StageNotReady, WorkspaceError
from tradelab.manifest_schema import Stage1Section
from tradelab.paths import Workspace


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while training, so both take the same save-and-record path."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def require_data(root: Path, market: str) -> None:
    """Stop with what to run when the market has no bars yet."""
    bars = Workspace.at(root).bars_path(market)
    if not bars.is_file():
        raise StageNotReady(
            f"{bars}: no bars for market {market}; create them with `python main.py data generate --market {market}` "
            f"or `python main.py data import PATH --market {market}`, then run stage1 again"
        )


def last_completed(section: Stage1Section | None) -> Stage1Section | None:
    """The most recent completed ``stage1`` section: ``section`` itself (without the one it keeps), or the one it
    keeps in ``last_completed``."""
    if section is None:
        return None
    if section.status == "completed":
        return section.model_copy(update={"last_completed": None})
    previous = section.last_completed
    return previous if previous is not None and previous.status == "completed" else None


def refuse_downgrade(root: Path, market: str, previous: Stage1Section | None, target: int, *, resume: bool,
                     force: bool) -> None:
    """A fresh run must not replace a completed model trained for more timesteps unless asked (``--force``)."""
    if previous is None or resume or force:
        return
    done = previous.total_timesteps
    if done is not None and done > target:
        model = Workspace.at(root).ppo_dir(market) / "final.zip"
        raise WorkspaceError(
            f"{model}: holds a completed Stage 1 run of {done} timesteps (completed {previous.completed_at}); "
            f"this run would replace it with one of {target}. Pass --force to replace it, --resume to continue "
            f"from the latest checkpoint, or use another --root"
        )
