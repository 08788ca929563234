"""Lazy loader of the CUDA kernels in ``kernels/*.cu`` (CuPy only; imported on first GPU use).

A source is compiled with ``cupy.RawModule`` the first time one of its kernels is asked for on
a device, then cached per ``(source, device id)``: a module is loaded into one device's
context and must not be launched on another. CuPy is imported inside the functions, so CPU-only
hosts never need it. Contracts of the kernels: ``kernels/README.md``.
"""

from __future__ import annotations

import threading
from typing import Any

from vsr_stream.resources import resource_dir

BLOCK_THREADS = 256  # every kernel uses a 1-D grid of 1-D blocks of this size

_OPTIONS = ("--std=c++17",)
_modules: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()  # stages run in threads; compile each module once


def function(source: str, name: str) -> Any:
    """Kernel ``name`` of ``kernels/<source>.cu``, built for the current CuPy device."""
    import cupy

    key = (source, cupy.cuda.Device().id)
    with _lock:
        module = _modules.get(key)
        if module is None:
            code = (resource_dir("kernels") / f"{source}.cu").read_text(encoding="utf-8")
            module = _modules[key] = cupy.RawModule(code=code, options=_OPTIONS)
    return module.get_function(name)


def launch(kernel: Any, threads: int, args: tuple[Any, ...]) -> None:
    """Run ``kernel`` on at least ``threads`` threads (1-D grid; extra threads return early).

    ``args`` must be C-contiguous CuPy arrays and NumPy scalars of the kernel's exact C types
    (``np.int32`` for ``int``...): CuPy passes an array's data pointer whatever its strides, and
    a Python int as a 64-bit value. A launch with no threads is skipped (CUDA rejects an empty
    grid).
    """
    if threads > 0:
        blocks = -(-threads // BLOCK_THREADS)
        kernel((blocks,), (BLOCK_THREADS,), args)
