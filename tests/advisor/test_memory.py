"""Peak memory measurement: the CPU sampler sees memory held inside the block."""

from __future__ import annotations

import sys

import pytest

from tradelab.advisor.memory import PeakMemory, process_peak_rss_mb, rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident set read from /proc (Linux)")
def test_cpu_peak_covers_a_tensor_held_in_the_block() -> None:
    import torch

    start = rss_mb()
    with PeakMemory("cpu") as memory:
        block = torch.ones(64 * 1024 * 1024)  # 256 MiB of float32, every page written
        held = float(block[-1])
    del block
    assert memory.kind == "cpu_peak_rss" and held == 1.0
    assert start is not None and memory.peak_mb >= start + 250
    assert process_peak_rss_mb() >= memory.peak_mb, "the process peak is never below a sampled one"
