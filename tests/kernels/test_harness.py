"""The CUDA kernels run on the CPU (g++ harness over the same .cu sources) against the reference.

Every case of :class:`KernelContract` runs through the public functions with the emulated CuPy,
so the launchers, the loader and the kernels are all exercised; the tests below check the
emulation itself, so that a launcher bug it is meant to catch really fails.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from tests.kernels.contract import KernelContract, _canvas, _upscaled_windows
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops import _kernels
from vsr_stream.ops.blend import accumulate_tiles, normalize
from vsr_stream.ops.tvat import tile_mad, tile_tvat, vsp
from vsr_stream.resources import resource_dir


class TestEmulatedKernels(KernelContract):
    @pytest.fixture
    def cp(self, emulated_any_order):
        return emulated_any_order


def test_harness_knows_every_kernel(harness_binary):
    declared = set()
    for source in resource_dir("kernels").glob("*.cu"):
        declared |= set(re.findall(r'extern "C" __global__ void (\w+)\(', source.read_text(encoding="utf-8")))
    listed = subprocess.run([str(harness_binary), "--list"], capture_output=True, text=True, check=True).stdout
    assert declared and set(listed.split()) == declared


def test_public_functions_launch_the_kernels(emulated):
    frame = _frame_on(emulated)
    geom = plan_tiles(4, 5, 2, 0, 0)
    tile_tvat(vsp(frame), geom, 0)
    tile_mad(frame, frame, geom)
    acc, wsum = _canvas(4, 5, 3, emulated)
    accumulate_tiles(acc, wsum, emulated.zeros((len(geom), 2, 2, 3), dtype=np.uint8), geom, 1, 0)
    normalize(acc, wsum, np.uint8)
    assert emulated.harness.launches == ["vsp_u8", "tile_vsp_sums", "tile_absdiff_u8", "accumulate_u8", "normalize_u8"]


def test_dtypes_without_a_kernel_take_the_array_path(emulated):
    geom = plan_tiles(4, 5, 2, 0, 0)
    windows = np.random.default_rng(1).integers(-500, 500, size=(len(geom), 2, 2, 3)).astype(np.int16)
    acc_ref, wsum_ref = _canvas(4, 5, 3)
    accumulate_tiles(acc_ref, wsum_ref, windows, geom, 1, 2)
    acc, wsum = _canvas(4, 5, 3, emulated)
    accumulate_tiles(acc, wsum, emulated.asarray(windows), geom, 1, 2)
    out = normalize(acc, wsum, np.int16)
    assert emulated.harness.launches == []
    assert np.array_equal(emulated.asnumpy(out), normalize(acc_ref, wsum_ref, np.int16))


def test_modules_are_built_once_per_device(emulated):
    frame = _frame_on(emulated)
    vsp(frame)
    vsp(frame)
    emulated.device_id = 1
    vsp(frame)
    assert emulated.compiled == [("tvat", 0, ("--std=c++17",)), ("tvat", 1, ("--std=c++17",))]


def test_emulation_rejects_python_ints_and_wrong_c_types(emulated):
    frame, out = _frame_on(emulated), emulated.zeros((4, 5), dtype=np.int64)
    kernel = _kernels.function("tvat", "vsp_u8")
    with pytest.raises(TypeError, match="NumPy scalar"):
        _kernels.launch(kernel, 20, (frame, out, 4, 5))  # CuPy would pass 64-bit values
    with pytest.raises(RuntimeError, match="expects scalar i4, got i8"):
        _kernels.launch(kernel, 20, (frame, out, np.int64(4), np.int32(5)))
    with pytest.raises(RuntimeError, match="expects buffer i8, got i4"):
        _kernels.launch(kernel, 20, (frame, out.astype(np.int32), np.int32(4), np.int32(5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        _kernels.launch(kernel, 20, (frame[:, ::-1], out, np.int32(4), np.int32(5)))


def test_emulation_catches_out_of_bounds_access(emulated, harness_sanitized):
    if not harness_sanitized:
        pytest.skip("this g++ cannot link AddressSanitizer; the harness runs unchecked")
    frame, short_out = _frame_on(emulated), emulated.zeros((3, 5), dtype=np.int64)  # one row short
    with pytest.raises(RuntimeError, match="AddressSanitizer"):
        _kernels.launch(_kernels.function("tvat", "vsp_u8"), 20, (frame, short_out, np.int32(4), np.int32(5)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_in_order_blocks_reproduce_the_reference_bit_for_bit(emulated, dtype):
    # Blocks in order add the tiles in the reference's order, so any difference comes from the
    # per-tile float operations (weight formula, (v * wy) * wx instead of v * (wy * wx), ...).
    geom = plan_tiles(20, 13, 8, 3, 2)
    windows = _upscaled_windows(geom, 3, 3, dtype, seed=15)
    acc_ref, wsum_ref = _canvas(60, 39, 3)
    accumulate_tiles(acc_ref, wsum_ref, windows, geom, 3, 7)
    acc, wsum = _canvas(60, 39, 3, emulated)
    accumulate_tiles(acc, wsum, emulated.asarray(windows), geom, 3, 7)
    assert np.array_equal(emulated.asnumpy(acc), acc_ref) and np.array_equal(emulated.asnumpy(wsum), wsum_ref)


def test_shuffled_blocks_change_float_sums_only_in_the_last_bits(emulated):
    # Proof that the shuffled run does reorder the float atomics (else the 1e-5 tolerance of
    # the contract tests would be untested).
    geom = plan_tiles(48, 64, 6, 4, 3)
    windows = _upscaled_windows(geom, 2, 3, np.uint8, seed=14)
    sums = []
    for seed in (0, 99):
        emulated.harness.block_order_seed = seed
        acc, wsum = _canvas(96, 128, 3, emulated)
        accumulate_tiles(acc, wsum, emulated.asarray(windows), geom, 2, 7)
        sums.append(emulated.asnumpy(acc))
    assert not np.array_equal(sums[0], sums[1])
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-6, atol=0)


def _frame_on(cp):
    return cp.asarray(np.random.default_rng(0).integers(0, 256, size=(4, 5, 3), dtype=np.uint8))
