"""The real CuPy path against the NumPy reference: the cases of test_harness.py on a CUDA device.

Marked ``gpu``; skipped where CuPy is not importable or no CUDA device is usable.
"""

from __future__ import annotations

import pytest

from tests.kernels.contract import KernelContract


def _cupy_with_device():
    try:
        import cupy
    except ImportError as e:
        pytest.skip(f"CuPy is not importable ({e}); the GPU path cannot run here")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"no usable CUDA device ({e})")
    if count < 1:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.gpu
class TestGpuKernels(KernelContract):
    @pytest.fixture
    def cp(self):
        return _cupy_with_device()
