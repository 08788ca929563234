"""A stand-in ``cupy`` module whose kernels run on the CPU through the g++ harness.

Arrays are NumPy arrays of a subclass that ``vsr_stream.ops.array_module`` takes for CuPy's
(its type's module starts with ``cupy``), so the public functions take their GPU path: the
launcher code, the ``_kernels`` loader and the ``.cu`` kernels all run, and only the device is
emulated. A launch is checked the way a GPU would fail on it, but loudly: non-contiguous or
host arrays, Python scalars (CuPy would pass them as 64-bit), wrong C types (the harness checks
each argument against the kernel's signature) and out-of-bounds accesses (AddressSanitizer).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

MAX_BLOCK_THREADS = 1024  # CUDA's limit per block


class DeviceArray(np.ndarray):
    """A NumPy array posing as a ``cupy.ndarray``."""

    __module__ = "cupy.emulated"

    def get(self) -> np.ndarray:
        return np.array(self)


class Harness:
    """Runs one kernel launch through the compiled harness binary."""

    def __init__(self, binary: Path, block_order_seed: int = 0) -> None:
        self.binary = binary
        self.block_order_seed = block_order_seed  # 0: blocks in order; else a shuffled order
        self.launches: list[str] = []

    def run(self, name: str, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]) -> None:
        _check_shape(grid, block)
        self.launches.append(name)
        with tempfile.TemporaryDirectory() as tmp:
            specs, buffers = [], []
            for i, arg in enumerate(args):
                if isinstance(arg, DeviceArray):
                    if not arg.flags.c_contiguous:
                        raise ValueError(f"{name} argument {i}: the kernel gets only the data pointer; "
                                         "pass a C-contiguous array")
                    path = Path(tmp) / f"arg{i}"
                    path.write_bytes(arg.tobytes())
                    specs.append(f"{_code(arg.dtype)}:{path}")
                    buffers.append((arg, path))
                elif isinstance(arg, np.generic):
                    specs.append(f"{_code(arg.dtype)}={arg.item()!r}")
                else:
                    raise TypeError(f"{name} argument {i}: expected a device array or a NumPy scalar, got {type(arg)}")
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
            cmd = [str(self.binary), str(self.block_order_seed), name, str(grid[0]), str(block[0]), *specs]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"harness failed on {name} (exit {done.returncode}):\n{done.stderr[-4000:]}")
            for arr, path in buffers:
                arr[...] = np.fromfile(path, dtype=arr.dtype).reshape(arr.shape)


def _check_shape(grid: tuple[int, ...], block: tuple[int, ...]) -> None:
    if not (isinstance(grid, tuple) and isinstance(block, tuple)):
        raise TypeError(f"grid and block must be tuples, got {grid!r}, {block!r}")
    if grid[1:] or block[1:] or grid[0] < 1 or not 1 <= block[0] <= MAX_BLOCK_THREADS:
        raise ValueError(f"expected a 1-D grid of 1-D blocks of <= {MAX_BLOCK_THREADS} threads, got {grid}, {block}")


def _code(dtype: np.dtype) -> str:
    return f"{dtype.kind}{dtype.itemsize}"


def module(harness: Harness, kernels_dir: Path) -> ModuleType:
    """The stand-in ``cupy``: NumPy functions returning :class:`DeviceArray`, plus the CUDA parts."""
    fake = ModuleType("cupy")
    fake.compiled = []  # (source name, device id, options) of every RawModule built
    fake.device_id = 0

    def on_device(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            return out.view(DeviceArray) if isinstance(out, np.ndarray) else out

        return call

    def raw_module(code: str, options: tuple[str, ...] = ()) -> Any:
        sources = {p.read_text(encoding="utf-8"): p.stem for p in kernels_dir.glob("*.cu")}
        if code not in sources:
            raise ValueError("RawModule: the code is not one of the shipped kernels/*.cu sources")
        fake.compiled.append((sources[code], fake.device_id, tuple(options)))
        kernel = lambda name: lambda grid, block, args: harness.run(name, grid, block, args)  # noqa: E731
        return SimpleNamespace(get_function=kernel)

    def numpy_attr(name: str) -> Any:
        attr = getattr(np, name)
        return attr if isinstance(attr, type) or not callable(attr) else on_device(attr)

    fake.__getattr__ = numpy_attr  # module-level __getattr__ (PEP 562): everything else is NumPy's
    fake.asarray = on_device(lambda a, dtype=None: np.array(a, dtype=dtype))  # an upload copies
    fake.asnumpy = lambda a: np.array(a)
    fake.RawModule = raw_module
    fake.cuda = SimpleNamespace(Device=lambda: SimpleNamespace(id=fake.device_id))
    return fake
