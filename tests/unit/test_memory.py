"""The heap trim runs every TRIM_EVERY_FRAMES frames and works on this platform."""

from __future__ import annotations

import platform
import sys

from vsr_stream.runtime.memory import TRIM_EVERY_FRAMES, trim_due, trim_heap


def test_trim_is_due_every_n_frames_only():
    due = [n for n in range(0, 3 * TRIM_EVERY_FRAMES + 1) if trim_due(n)]
    assert due == [TRIM_EVERY_FRAMES, 2 * TRIM_EVERY_FRAMES, 3 * TRIM_EVERY_FRAMES]


def test_trim_heap_is_available_on_linux_glibc():
    blocks = [bytearray(100_000) for _ in range(500)]  # below the mmap threshold: on the heap
    del blocks
    result = trim_heap()
    assert isinstance(result, bool)
    if sys.platform.startswith("linux") and "glibc" in " ".join(platform.libc_ver()):
        assert result  # 50 MB of free heap pages went back to the system
