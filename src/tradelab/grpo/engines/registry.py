"""The Stage 2 engine registry: one :class:`~tradelab.grpo.engines.interface.Engine` per name.

The runner and preflight import this module (downwards) and ask the engine for its plan, prepare step, output
export and checks; no engine module imports the runner or preflight.
"""

from __future__ import annotations

from tradelab.errors import ConfigError
from tradelab.grpo import ENGINES as ENGINE_NAMES
from tradelab.grpo.engines import local, soft_grpo, verl
from tradelab.grpo.engines.interface import Engine

ENGINES: dict[str, Engine] = {e.name: e for e in (verl.ENGINE_SPEC, soft_grpo.ENGINE_SPEC, local.ENGINE_SPEC)}
"""Name -> engine, in the CLI's order (:data:`tradelab.grpo.ENGINES` lists the names without importing this)."""

if tuple(ENGINES) != ENGINE_NAMES:
    raise RuntimeError(f"engine registry {tuple(ENGINES)} disagrees with tradelab.grpo.ENGINES {ENGINE_NAMES}")


def get_engine(name: str) -> Engine:
    """The engine called ``name``.

    Raises:
        ConfigError: No engine has that name; the message lists the valid ones.
    """
    engine = ENGINES.get(name)
    if engine is None:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return engine
