"""tradelab: a terminal research workbench for futures-trading agents.

Importing the package is cheap: heavy dependencies (torch, transformers, peft, sb3, verl) load lazily inside the
modules that need them.
"""

__version__ = "0.1.0"

ACTIONS: tuple[str, ...] = ("HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")
"""Action names in the order of their ids; shared by the env, the advisor, the reward and evaluation."""

ACTION_IDS: dict[str, int] = {name: i for i, name in enumerate(ACTIONS)}
