"""tradelab: a terminal research workbench for futures-trading agents.

Importing the package is cheap: heavy dependencies (torch, transformers, peft, sb3, verl) load lazily inside the
modules that need them.
"""

from tradelab.core import ACTION_IDS, ACTIONS

__version__ = "0.1.0"

__all__ = ["ACTIONS", "ACTION_IDS", "__version__"]
