"""Torch's CPU thread count for one block of work, restored afterwards.

Each stage sets its own count (``ppo.torch_threads`` for Stage 1, ``llm.generation.cpu_threads`` per generate call,
``llm.sft.cpu_threads`` per adapter training, ``grpo_local.cpu_threads`` for the local engine): small models' operations
are too short to split across cores, and where another process shares the cores the extra threads spin while waiting
for each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Use ``threads`` torch intra-op CPU threads inside the block (0: leave the process setting), then restore it."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
