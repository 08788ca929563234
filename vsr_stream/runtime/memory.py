"""Keep a long run's memory flat: hand the heap's free pages back to the system now and then.

Every frame allocates and frees a few large buffers (HR canvases, upscaled windows, network
activations: 3-15 MB each at 720p). glibc serves them from its heap once its adaptive mmap
threshold has grown, and the heap fragments, so the resident size creeps up over a long run
(measured: +37 % peak RSS from 24 to 240 frames of 320x180 -> 1280x720). Keeping those buffers
on ``mmap`` instead (a fixed threshold) kept memory flat but cost 1.8x the branch time in page
faults, so the loops call :func:`trim_heap` every few dozen frames instead: ``malloc_trim``
returns the free pages (milliseconds). Measured within one 240-frame run (``bench --memory-scaling``):
the peak after 24 frames equals the peak after 240; without the trim it crept up 1.37x.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from typing import Any

TRIM_EVERY_FRAMES = 32


@cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim_heap() -> bool:
    """Return the C heap's free memory to the system (glibc ``malloc_trim``); False where there
    is no such call (other allocators and platforms manage this themselves)."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def trim_due(frames: int) -> bool:
    """True every :data:`TRIM_EVERY_FRAMES` frames."""
    return frames > 0 and frames % TRIM_EVERY_FRAMES == 0
