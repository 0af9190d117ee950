"""The loop's entry points: the CLI's ``loop`` subcommand and the menu call these.

The loop composes the stage functions of :mod:`tradelab.stages` (Stage 1, Stage 2, evaluation), so it sits above
them: ``stages`` never imports the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradelab import stages
from tradelab.config import TradelabConfig
from tradelab.errors import TradelabError
from tradelab.grpo import DEFAULT_ENGINE, ENGINES
from tradelab.loop.parallel import loop_markets as run_markets
from tradelab.manifest_schema import LoopSettings
from tradelab.markets import validate_market_name
from tradelab.stages import LineSink, Progress


def loop(
    root: str | Path, market: str, *, iterations: int, engine: str = DEFAULT_ENGINE, seeds: int | None = None,
    probe_prompts: int | None = None, timesteps: int | None = None, restart: bool = False,
    config: TradelabConfig | None = None, on_event: LineSink | None = None, progress: Progress | None = None,
    ray: str | None = None,
) -> dict[str, Any]:
    """Stage 1 -> Stage 2 dataset -> Stage 2 engine -> evaluation, ``iterations`` times, with a loop report.

    An unfinished loop with the same settings resumes where it stopped; ``restart`` starts a new one. With ``ray``
    (an address, or ``"local"``) each evaluation's seeds run as Ray tasks.
    """
    return loop_markets(root, [market], iterations=iterations, engine=engine, seeds=seeds,
                        probe_prompts=probe_prompts, timesteps=timesteps, restart=restart, config=config,
                        on_event=on_event, progress=progress, ray=ray)[0]


def loop_markets(
    root: str | Path, markets: list[str], *, iterations: int, engine: str = DEFAULT_ENGINE, seeds: int | None = None,
    probe_prompts: int | None = None, timesteps: int | None = None, restart: bool = False,
    config: TradelabConfig | None = None, on_event: LineSink | None = None, progress: Progress | None = None,
    ray: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`loop` for several markets, one result each; with ``ray`` and several markets each market's loop is a
    Ray task in its own workspace folder, moved into this workspace when it has finished."""
    for market in markets:
        validate_market_name(market)
    cfg = config if config is not None else stages.workspace_config(root)
    if engine not in ENGINES:
        raise TradelabError(f"loop --engine {engine!r}: choose one of {', '.join(ENGINES)}")
    ev = cfg.evaluation
    settings = LoopSettings(
        iterations=iterations, engine=engine,
        seeds=seeds if seeds is not None else ev.seeds,
        profile=cfg.profile,
        probe_prompts=probe_prompts if probe_prompts is not None else ev.probe_prompts,
        timesteps=timesteps,
    )
    return run_markets(root, markets, cfg, settings, restart=restart, ray_address=ray, on_event=on_event,
                       progress=progress)
