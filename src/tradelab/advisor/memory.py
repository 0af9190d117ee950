"""Peak memory of a block of work: CUDA's allocator peak on a GPU, the process's sampled resident set on a CPU.

On CPU the figure is the largest resident set size (RSS) seen while the block ran, read from ``/proc/self/statm``
every :data:`SAMPLE_INTERVAL_S` by a background thread (Linux; elsewhere the process's lifetime peak from
``getrusage``). It includes the weights and everything else the process holds, so it answers "how much memory did
this process need while training", which is what decides whether a base model fits.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType

SAMPLE_INTERVAL_S = 0.005
"""How often the CPU sampler reads the resident set size."""
_MB = 1024 * 1024


def rss_mb() -> float | None:
    """The process's current resident set size in MB, or None where ``/proc/self/statm`` does not exist."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / _MB


_sampled_peak_mb = 0.0
"""The largest resident set any :class:`PeakMemory` sampled in this process."""


def process_peak_rss_mb() -> float:
    """The process's lifetime peak resident set size in MB: ``getrusage`` (KiB on Linux, bytes on macOS), or the
    largest RSS a :class:`PeakMemory` sampled when that is higher (Linux updates the high-water mark ``getrusage``
    reads lazily, so it can trail a sample from ``/proc/self/statm`` by a few hundred KB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(peak / _MB if sys.platform == "darwin" else peak / 1024, _sampled_peak_mb)


class PeakMemory:
    """Context manager measuring peak memory while its block runs; ``peak_mb`` and ``kind`` are set on exit.

    Args:
        device: ``"cuda"`` measures ``torch.cuda.max_memory_allocated`` (reset on entry); anything else the
            process's sampled RSS.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.startswith("cuda") else "cpu_peak_rss"
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            current = rss_mb()
            if current is not None:
                self.peak_mb = max(self.peak_mb, current)

    def __enter__(self) -> PeakMemory:
        if self.kind == "cuda_max_allocated":
            import torch

            torch.cuda.reset_peak_memory_stats()
            return self
        current = rss_mb()
        if current is None:
            self.kind = "process_peak_rss"
            return self
        self.peak_mb = current
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.kind == "cuda_max_allocated":
            import torch

            self.peak_mb = torch.cuda.max_memory_allocated() / _MB
        elif self.kind == "process_peak_rss":
            self.peak_mb = process_peak_rss_mb()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak_mb = max(self.peak_mb, rss_mb() or 0.0)
        self.peak_mb = round(self.peak_mb, 1)
        if self.kind == "cpu_peak_rss":
            global _sampled_peak_mb
            _sampled_peak_mb = max(_sampled_peak_mb, self.peak_mb)
