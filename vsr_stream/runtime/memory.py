"""Keep a long run's memory flat: hand the heap's free pages back to the system now and then.

Every frame allocates and frees a few large buffers (HR canvases, upscaled windows, network
activations: 3-15 MB each at 720p). glibc serves them from its heap once its adaptive mmap
threshold has grown, and the heap fragments, so the resident size creeps up over a long run
(measured: +37 % peak RSS from 24 to 240 frames of 320x180 -> 1280x720). Keeping those buffers
on ``mmap`` instead (a fixed threshold) kept memory flat but cost 1.8x the branch time in page
faults, so the loops call :func:`trim_heap` every few dozen frames instead: ``malloc_trim``
returns the free pages (milliseconds). Measured within one 240-frame run (``bench --memory-scaling``):
the peak after 24 frames equals the peak after 240; without the trim it crept up 1.37x.

Between two trims the heap should keep its free pages: glibc's own policy gives the top of the
heap back to the system whenever more than its (adaptive) trim threshold is free there, which
with buffers of this size happens after nearly every frame, and the next frame faults the pages
in again. :func:`keep_heap_resident` fixes both thresholds instead (mmap for blocks of 32 MiB and
more, the most glibc allows; trim above 256 MiB), leaving the periodic trim to return memory.
Measured (one 320x180 frame through ``BranchModel.upscale``, x4, 2 threads, median over 20 calls,
three processes each): the routed preset's 36-wide branch took 6,000-8,000 minor page faults per
call and 60-71 ms of CPU with glibc's policy, none and 40-49 ms with these thresholds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from typing import Any

TRIM_EVERY_FRAMES = 32
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD_BYTES = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


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


@cache
def keep_heap_resident() -> bool:
    """Keep freed buffers of up to :data:`MMAP_THRESHOLD_BYTES` on the heap, and the heap's free
    top up to :data:`TRIM_THRESHOLD_BYTES`, for the rest of this process (see the module
    docstring). Idempotent; False where there is no glibc ``mallopt`` or it refused a value."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    # both: setting either ends glibc's adaptive thresholds, leaving mmap's at its 128 KiB default
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def trim_due(frames: int) -> bool:
    """True every :data:`TRIM_EVERY_FRAMES` frames."""
    return frames > 0 and frames % TRIM_EVERY_FRAMES == 0
