"""The kernel contract as tests: the GPU path of each public function against the NumPy reference.

Subclasses provide a ``cp`` fixture: the emulated CuPy (test_harness.py, runs everywhere) or the
real one (test_gpu.py, needs a CUDA device). Integer results must be equal; float sums from
float atomics within relative 1e-5; integers rounded from those within one unit, and only where
the reference quotient is within 1e-4 of a .5 boundary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vsr_stream.errors import ModelInputError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.blend import accumulate_tiles, normalize
from vsr_stream.ops.tvat import tile_mad, tile_tvat, vsp

SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (17, 23), (48, 64)]
# (h, w, tile_px, overlap_px, context_px): one tile, edge-aligned last tiles, many tiles, and
# frames thinner than a tile (cores and windows that are not square).
PLANS = [(1, 1, 4, 1, 2), (5, 5, 8, 2, 2), (13, 19, 4, 1, 2), (13, 19, 5, 0, 0), (48, 64, 6, 2, 3), (9, 4, 1, 0, 0),
         (3, 20, 8, 2, 1), (20, 6, 8, 3, 2)]

# Cores of different sizes (plan_tiles never makes them, the kernels allow them) on a 5x9
# frame, each inside its 4x6 window: threads past a smaller core must do nothing.
MIXED_GEOM = np.array([[0, 0, 0, 3, 5, 0, 0, 4, 6], [1, 2, 1, 1, 1, 1, 0, 4, 6], [2, 1, 4, 2, 2, 0, 2, 4, 6]], np.int32)


def _frame(h: int, w: int, seed: int, dtype: Any = np.uint8) -> np.ndarray:
    high = np.iinfo(dtype).max + 1
    return np.random.default_rng(seed).integers(0, high, size=(h, w, 3), dtype=dtype)


def _upscaled_windows(geom: np.ndarray, scale: int, channels: int, dtype: Any, seed: int) -> np.ndarray:
    n, wh, ww = len(geom), int(geom[0, 7]) * scale, int(geom[0, 8]) * scale
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(0.0, 255.0, size=(n, wh, ww, channels)).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=(n, wh, ww, channels), dtype=dtype)


def _canvas(h: int, w: int, channels: int, xp: Any = np) -> tuple[Any, Any]:
    return xp.zeros((h, w, channels), dtype=xp.float32), xp.zeros((h, w), dtype=xp.float32)


def assert_rounded_like(out: np.ndarray, ref: np.ndarray, acc_ref: np.ndarray, wsum_ref: np.ndarray) -> None:
    """Equal, except off by one where the reference quotient is within 1e-4 of a .5 boundary."""
    q = acc_ref.astype(np.float64) / wsum_ref[..., None].astype(np.float64)
    near_half = np.abs(q - np.floor(q) - 0.5) < 1e-4
    assert np.array_equal(out[~near_half], ref[~near_half])
    assert np.abs(out.astype(np.int64) - ref)[near_half].max(initial=0) <= 1


class KernelContract:
    # ---- VSP -----------------------------------------------------------------------------------

    @pytest.mark.parametrize("h, w", SIZES)
    def test_vsp_matches_reference(self, cp, h, w):
        frame = _frame(h, w, seed=h * 100 + w)
        result = vsp(cp.asarray(frame))
        assert type(result).__module__.startswith("cupy") and result.dtype == np.int64
        assert np.array_equal(cp.asnumpy(result), vsp(frame))

    def test_vsp_differs_for_a_shifted_frame(self, cp):
        frame = _frame(9, 11, seed=1)
        result = cp.asnumpy(vsp(cp.asarray(frame)))
        assert not np.array_equal(result, vsp(np.roll(frame, 1, axis=1)))

    def test_vsp_uint16_and_extremes(self, cp):
        frame16 = _frame(10, 13, seed=2, dtype=np.uint16)
        assert np.array_equal(cp.asnumpy(vsp(cp.asarray(frame16))), vsp(frame16))
        checker = ((np.indices((6, 7)).sum(axis=0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
        result = cp.asnumpy(vsp(cp.asarray(checker)))
        assert np.array_equal(result, vsp(checker))
        assert result.max() == 4 * 3 * 255**2  # an inner pixel differs from its 4 edge neighbours

    def test_vsp_of_a_strided_view(self, cp):
        big = _frame(12, 15, seed=3)
        view = cp.asarray(big)[2:9, ::-2]
        assert np.array_equal(cp.asnumpy(vsp(view)), vsp(big[2:9, ::-2]))

    def test_vsp_rejects_bad_frames(self, cp):
        with pytest.raises(ModelInputError):
            vsp(cp.zeros((4, 4, 4), dtype=cp.uint8))
        with pytest.raises(ModelInputError):
            vsp(cp.zeros((4, 4, 3), dtype=cp.float32))

    # ---- TVAT ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("plan", PLANS)
    def test_tile_tvat_matches_reference(self, cp, plan):
        h, w = plan[:2]
        frame = _frame(h, w, seed=sum(plan))
        geom = plan_tiles(*plan)
        vsp_map = vsp(frame)
        present = np.unique(vsp_map)
        # 0, values exactly in the map (inclusive bound), between them, and above the maximum.
        thresholds = (0, present[len(present) // 2], present[-1], present[-1] + 1, present[len(present) // 3] + 0.5)
        for threshold in thresholds:
            result = tile_tvat(cp.asarray(vsp_map), geom, threshold)
            assert result.dtype == np.float64
            assert np.array_equal(cp.asnumpy(result), tile_tvat(vsp_map, geom, threshold)), threshold

    def test_tile_sums_over_cores_of_different_sizes(self, cp):
        frame, prev = _frame(5, 9, seed=16), _frame(5, 9, seed=17)
        vsp_map = vsp(frame)
        result = cp.asnumpy(tile_tvat(cp.asarray(vsp_map), MIXED_GEOM, 1000))
        assert np.array_equal(result, tile_tvat(vsp_map, MIXED_GEOM, 1000))
        result = cp.asnumpy(tile_mad(cp.asarray(frame), cp.asarray(prev), MIXED_GEOM))
        assert np.array_equal(result, tile_mad(frame, prev, MIXED_GEOM))

    def test_tile_tvat_exact_integer_sums(self, cp):
        vsp_map = vsp(_frame(13, 19, seed=4))
        geom = plan_tiles(13, 19, 4, 1, 0)
        threshold = int(np.median(vsp_map))
        result = cp.asnumpy(tile_tvat(cp.asarray(vsp_map), cp.asarray(geom), threshold))
        for value, (_, y0, x0, h, w, *_) in zip(result, geom):
            core = vsp_map[y0 : y0 + h, x0 : x0 + w]
            assert value * (h * w) == core[core >= threshold].sum()
        assert not np.array_equal(result, tile_tvat(np.roll(vsp_map, 1, axis=0), geom, threshold))

    def test_tile_tvat_negative_values_and_wide_map(self, cp):
        # Not a VSP map, but the contract is any int64 map: checks the signed view of the sums.
        vsp_map = np.random.default_rng(5).integers(-(2**40), 2**20, size=(6, 9), dtype=np.int64)
        geom = plan_tiles(6, 9, 4, 1, 0)
        expected = tile_tvat(vsp_map, geom, -(2**39))
        assert (expected < 0).all()
        assert np.array_equal(cp.asnumpy(tile_tvat(cp.asarray(vsp_map), geom, -(2**39))), expected)

    def test_tile_tvat_rejects_core_outside_map(self, cp):
        with pytest.raises(ModelInputError, match="outside"):
            tile_tvat(cp.zeros((3, 3), dtype=cp.int64), np.array([[0, 0, 0, 4, 3, 0, 0, 4, 3]], np.int32), 0)

    # ---- MAD -----------------------------------------------------------------------------------

    @pytest.mark.parametrize("plan", PLANS)
    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
    def test_tile_mad_matches_reference(self, cp, plan, dtype):
        h, w = plan[:2]
        frame, prev = _frame(h, w, seed=6, dtype=dtype), _frame(h, w, seed=7, dtype=dtype)
        geom = plan_tiles(*plan)
        result = tile_mad(cp.asarray(frame), cp.asarray(prev), geom)
        assert result.dtype == np.float64
        assert np.array_equal(cp.asnumpy(result), tile_mad(frame, prev, geom))

    def test_tile_mad_same_shifted_and_extreme(self, cp):
        frame = _frame(16, 16, seed=8)
        geom = plan_tiles(16, 16, 8, 2, 0)
        assert np.array_equal(cp.asnumpy(tile_mad(cp.asarray(frame), cp.asarray(frame), geom)), np.zeros(len(geom)))
        shifted = cp.asnumpy(tile_mad(cp.asarray(frame), cp.asarray(np.roll(frame, 1, axis=1)), geom))
        assert (shifted > 0).all()
        black, white = np.zeros_like(frame), np.full_like(frame, 255)
        assert cp.asnumpy(tile_mad(cp.asarray(black), cp.asarray(white), geom)).tolist() == [255.0] * len(geom)

    def test_tile_mad_rejects_mismatched_prev(self, cp):
        with pytest.raises(ModelInputError, match="prev"):
            tile_mad(cp.zeros((4, 4, 3), dtype=cp.uint8), cp.zeros((4, 5, 3), dtype=cp.uint8),
                     plan_tiles(4, 4, 2, 0, 0))

    # ---- blending ------------------------------------------------------------------------------

    @pytest.mark.parametrize("plan", PLANS)
    @pytest.mark.parametrize("scale, ramp_px", [(1, 0), (2, 2), (3, 4), (2, 99)])
    def test_accumulate_and_normalize_match_reference(self, cp, plan, scale, ramp_px):
        geom = plan_tiles(*plan)
        windows = _upscaled_windows(geom, scale, 3, np.uint8, seed=sum(plan) + scale)
        acc_ref, wsum_ref = _canvas(plan[0] * scale, plan[1] * scale, 3)
        accumulate_tiles(acc_ref, wsum_ref, windows, geom, scale, ramp_px)
        acc, wsum = _canvas(plan[0] * scale, plan[1] * scale, 3, cp)
        accumulate_tiles(acc, wsum, cp.asarray(windows), geom, scale, ramp_px)
        np.testing.assert_allclose(cp.asnumpy(acc), acc_ref, rtol=1e-5, atol=0)
        np.testing.assert_allclose(cp.asnumpy(wsum), wsum_ref, rtol=1e-5, atol=0)
        out = normalize(acc, wsum, np.uint8)
        assert type(out).__module__.startswith("cupy") and out.dtype == np.uint8
        assert_rounded_like(cp.asnumpy(out), normalize(acc_ref, wsum_ref, np.uint8), acc_ref, wsum_ref)

    @pytest.mark.parametrize("dtype, channels", [(np.uint16, 3), (np.float32, 3), (np.uint8, 1), (np.float32, 4)])
    def test_accumulate_dtypes_and_channels(self, cp, dtype, channels):
        geom = plan_tiles(13, 19, 5, 2, 1)
        windows = _upscaled_windows(geom, 2, channels, dtype, seed=9)
        acc_ref, wsum_ref = _canvas(26, 38, channels)
        accumulate_tiles(acc_ref, wsum_ref, windows, geom, 2, 4)
        acc, wsum = _canvas(26, 38, channels, cp)
        accumulate_tiles(acc, wsum, cp.asarray(windows), geom, 2, 4)
        np.testing.assert_allclose(cp.asnumpy(acc), acc_ref, rtol=1e-5, atol=0)
        np.testing.assert_allclose(cp.asnumpy(wsum), wsum_ref, rtol=1e-5, atol=0)

    def test_accumulate_cores_of_different_sizes_and_strided_windows(self, cp):
        windows = _upscaled_windows(MIXED_GEOM, 2, 3, np.uint8, seed=18)
        acc_ref, wsum_ref = _canvas(10, 18, 3)
        accumulate_tiles(acc_ref, wsum_ref, windows[:, ::-1], MIXED_GEOM, 2, 2)
        acc, wsum = _canvas(10, 18, 3, cp)
        accumulate_tiles(acc, wsum, cp.asarray(windows)[:, ::-1], MIXED_GEOM, 2, 2)
        np.testing.assert_allclose(cp.asnumpy(acc), acc_ref, rtol=1e-5, atol=0)
        np.testing.assert_allclose(cp.asnumpy(wsum), wsum_ref, rtol=1e-5, atol=0)

    def test_accumulate_adds_to_earlier_batches(self, cp):
        geom = plan_tiles(13, 19, 5, 2, 1)
        windows = _upscaled_windows(geom, 2, 3, np.uint8, seed=10)
        acc_ref, wsum_ref = _canvas(26, 38, 3)
        acc, wsum = _canvas(26, 38, 3, cp)
        for part in (slice(0, 5), slice(5, None)):  # two RESULT messages of one frame
            accumulate_tiles(acc_ref, wsum_ref, windows[part], geom[part], 2, 4)
            accumulate_tiles(acc, wsum, cp.asarray(windows[part]), geom[part], 2, 4)
        np.testing.assert_allclose(cp.asnumpy(acc), acc_ref, rtol=1e-5, atol=0)
        assert not np.allclose(cp.asnumpy(acc), np.roll(acc_ref, 1, axis=1), rtol=1e-5, atol=0)

    def test_identical_tiles_blend_back_exactly(self, cp):
        # Tiles that agree on every pixel must give exactly that frame, whatever the weights.
        scale, hr = 2, _frame(26, 38, seed=11)
        geom = plan_tiles(13, 19, 5, 2, 1)
        windows = np.stack([hr[wy0 * scale : (wy0 + wh) * scale, wx0 * scale : (wx0 + ww) * scale]
                            for _, _, _, _, _, wy0, wx0, wh, ww in geom])
        acc, wsum = _canvas(26, 38, 3, cp)
        accumulate_tiles(acc, wsum, cp.asarray(windows), geom, scale, 4)
        assert np.array_equal(cp.asnumpy(normalize(acc, wsum, np.uint8)), hr)

    def test_normalize_is_exact_for_the_same_sums(self, cp):
        acc = np.array([[[2.5], [3.5], [-3.0], [300.0], [254.4], [70000.0], [0.5], [1e-30]]], np.float32)
        wsum = np.ones((1, 8), np.float32)
        wsum[0, 7] = 1e-30
        for dtype in (np.uint8, np.uint16):
            out = normalize(cp.asarray(acc), cp.asarray(wsum), dtype)
            assert out.dtype == dtype
            assert np.array_equal(cp.asnumpy(out), normalize(acc, wsum, dtype))
        rng = np.random.default_rng(12)
        acc = rng.uniform(-10, 300, size=(7, 9, 3)).astype(np.float32)
        wsum = rng.uniform(0.01, 3, size=(7, 9)).astype(np.float32)
        assert np.array_equal(cp.asnumpy(normalize(cp.asarray(acc), cp.asarray(wsum), np.uint8)),
                              normalize(acc, wsum, np.uint8))

    def test_normalize_counts_uncovered_pixels(self, cp):
        geom = plan_tiles(8, 8, 4, 0, 0)[:3]  # the last quarter has no tile
        windows = _upscaled_windows(geom, 1, 3, np.uint8, seed=13)
        acc, wsum = _canvas(8, 8, 3, cp)
        accumulate_tiles(acc, wsum, cp.asarray(windows), geom, 1, 2)
        with pytest.raises(ModelInputError, match="16 pixel"):
            normalize(acc, wsum, np.uint8)

    def test_accumulate_rejects_bad_placement(self, cp):
        geom = plan_tiles(8, 8, 4, 0, 0)
        windows = cp.zeros((len(geom), 8, 8, 3), dtype=cp.uint8)
        acc, wsum = _canvas(15, 16, 3, cp)  # one HR row short
        with pytest.raises(ModelInputError, match="outside"):
            accumulate_tiles(acc, wsum, windows, geom, 2, 2)
        acc, wsum = _canvas(16, 16, 3, cp)
        with pytest.raises(ModelInputError, match="C-contiguous"):
            accumulate_tiles(acc[:, ::-1], wsum[:, ::-1], windows, geom, 2, 2)
