"""The heap trim runs every TRIM_EVERY_FRAMES frames and works on this platform; between trims
the heap keeps its pages."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from vsr_stream.runtime.memory import TRIM_EVERY_FRAMES, trim_due, trim_heap


def _glibc_linux() -> bool:
    return sys.platform.startswith("linux") and "glibc" in " ".join(platform.libc_ver())


def test_trim_is_due_every_n_frames_only():
    due = [n for n in range(0, 3 * TRIM_EVERY_FRAMES + 1) if trim_due(n)]
    assert due == [TRIM_EVERY_FRAMES, 2 * TRIM_EVERY_FRAMES, 3 * TRIM_EVERY_FRAMES]


def test_trim_heap_is_available_on_linux_glibc():
    blocks = [bytearray(100_000) for _ in range(500)]  # below the mmap threshold: on the heap
    del blocks
    result = trim_heap()
    assert isinstance(result, bool)
    if _glibc_linux():
        assert result  # 50 MB of free heap pages went back to the system


_FAULTS_PER_CYCLE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from vsr_stream.runtime.memory import keep_heap_resident
    assert keep_heap_resident()
def cycle():  # what a network call does: a few activation-sized buffers, written, then freed
    bufs = [np.ones(3 << 20, np.float32) for _ in range(4)]
    del bufs
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not _glibc_linux(), reason="glibc's mallopt thresholds")
def test_keep_heap_resident_stops_the_per_call_page_faults():
    def faults(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_CYCLE, mode], capture_output=True, text=True,
                             check=True)
        return float(out.stdout)

    kept, adaptive = faults("keep"), faults("glibc")
    assert kept < 50, kept  # 12,288 pages are written per cycle
    assert adaptive > 10 * max(kept, 1), (kept, adaptive)  # the test can tell the two policies apart
