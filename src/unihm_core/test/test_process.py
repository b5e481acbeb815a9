"""Process-wide memory settings: arena cap and trimming (glibc only)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from unihm_core import process


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(process._libc() is None, reason="not glibc")
def test_trimming_returns_freed_heap_memory_to_the_system() -> None:
    # many mid-sized blocks (below the mmap threshold, so they live in the heap), every other
    # one freed: the holes stay resident until trimmed
    blocks = [np.ones(8_000) for _ in range(3000)]  # 3000 x 64 kB
    del blocks[::2]  # 94 MB freed in holes
    before = _rss_mb()
    process.release_free_memory()
    after = _rss_mb()
    del blocks
    assert before - after > 40.0, (before, after)


def test_the_trimmer_thread_starts_once_and_stops() -> None:
    def running() -> int:
        return [t.name for t in threading.enumerate()].count("unihm-memory-trim")

    was_running = running() > 0  # a graph started earlier in this process runs one
    process.stop_memory_trimmer()
    assert running() == 0
    try:
        first = process.start_memory_trimmer(period_s=60.0)
        assert first == (process._libc() is not None)
        assert not process.start_memory_trimmer(period_s=60.0)
        assert running() == int(first)
        process.stop_memory_trimmer()
        assert running() == 0
    finally:
        if was_running:
            process.start_memory_trimmer()
