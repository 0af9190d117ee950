"""The Stage 2 reward's public name (ARCHITECTURE.md §4, §8), and the file the verl engines are pointed at.

The reward lives in :mod:`tradelab.core.reward`; this module only re-exports it and, like the core, imports under a
bare Python with only numpy.
"""

from tradelab.core.reward import compute_score

__all__ = ["compute_score"]
