"""Feathered blending: weights, exactness where tiles agree, rounding, uncovered pixels."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.errors import ModelInputError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.blend import accumulate, accumulate_tiles, feather_weights, normalize, stitch_cores


def _buffers(h: int, w: int, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w, c), np.float32), np.zeros((h, w), np.float32)


def test_feather_weights_known_values():
    # Row of 5, ramp 2: distances 0 1 2 1 0 -> min(d + 1, 2) / 2.
    assert feather_weights(1, 5, 2).tolist() == [[0.25, 0.5, 0.5, 0.5, 0.25]]
    assert feather_weights(3, 1, 4).ravel().tolist() == [0.0625, 0.125, 0.0625]


@pytest.mark.parametrize("h, w", [(1, 1), (1, 9), (8, 8), (13, 6), (40, 33)])
@pytest.mark.parametrize("ramp_px", [1, 3, 8, 100])
def test_feather_weights_positive_symmetric_falling_to_edges(h, w, ramp_px):
    weights = feather_weights(h, w, ramp_px)
    assert weights.dtype == np.float32 and weights.shape == (h, w)
    assert np.all(weights > 0) and np.all(weights <= 1)
    assert np.array_equal(weights, weights[::-1, :]) and np.array_equal(weights, weights[:, ::-1])
    centre_row = weights[h // 2]
    assert np.all(np.diff(centre_row[: w // 2 + 1]) >= 0)


@pytest.mark.parametrize("ramp_px", [0, -3])
def test_feather_weights_without_ramp_are_ones(ramp_px):
    assert np.array_equal(feather_weights(4, 6, ramp_px), np.ones((4, 6), np.float32))


@pytest.mark.parametrize("dtype, values", [(np.uint8, [0, 1, 127, 254, 255]), (np.uint16, [0, 1, 257, 65534, 65535])])
def test_identical_values_blend_back_exactly(dtype, values):
    rng = np.random.default_rng(0)
    acc, wsum = _buffers(1, len(values))
    tile = np.array([values], dtype=dtype)[..., None].repeat(3, axis=2)
    for _ in range(9):
        weight = rng.uniform(1e-3, 1.0, size=(1, len(values))).astype(np.float32)
        accumulate(acc, wsum, tile, weight, 0, 0)
    assert np.array_equal(normalize(acc, wsum, dtype), tile)


def test_normalize_rounds_half_to_even_and_clips():
    acc = np.array([[[2.5], [3.5], [-3.0], [300.0], [254.4], [70000.0]]], np.float32)
    wsum = np.ones((1, 6), np.float32)
    assert normalize(acc, wsum, np.uint8).ravel().tolist() == [2, 4, 0, 255, 254, 255]
    out16 = normalize(acc, wsum, np.uint16)
    assert out16.dtype == np.uint16 and out16.ravel().tolist() == [2, 4, 0, 300, 254, 65535]


def test_normalize_divides_by_weight_sum():
    acc = np.array([[[10.0, 3.0]]], np.float32)
    wsum = np.array([[4.0]], np.float32)
    assert normalize(acc, wsum, np.uint8).tolist() == [[[2, 1]]]  # 2.5 -> 2, 0.75 -> 1


def test_normalize_raises_on_uncovered_pixel():
    acc, wsum = _buffers(4, 4)
    accumulate(acc, wsum, np.ones((4, 3, 3), np.uint8), feather_weights(4, 3, 2), 0, 0)
    with pytest.raises(ValueError, match="4 pixel"):
        normalize(acc, wsum, np.uint8)


def test_accumulate_adds_weighted_tile_in_place():
    acc, wsum = _buffers(3, 4, 1)
    weight = np.array([[0.5, 1.0]], np.float32)
    accumulate(acc, wsum, np.array([[[4], [6]]], np.uint8), weight, 1, 2)
    accumulate(acc, wsum, np.array([[[4], [6]]], np.uint8), weight, 1, 2)
    assert acc[1, 2:, 0].tolist() == [4.0, 12.0] and wsum[1, 2:].tolist() == [1.0, 2.0]
    assert acc.sum() == 16.0 and wsum.sum() == 3.0


@pytest.mark.parametrize(
    "tile, weight, y0, x0, match",
    [
        (np.zeros((2, 2, 1), np.uint8), np.ones((2, 2), np.float32), 0, 0, r"tile must be \(h, w, 3\)"),
        (np.zeros((2, 2, 3), np.uint8), np.ones((2, 3), np.float32), 0, 0, r"weight must be \(2, 2\)"),
        (np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32), 3, 0, "does not fit"),
        (np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32), 0, -1, "does not fit"),
    ],
)
def test_accumulate_rejects_mismatched_inputs(tile, weight, y0, x0, match):
    acc, wsum = _buffers(4, 4)
    with pytest.raises(ModelInputError, match=match):
        accumulate(acc, wsum, tile, weight, y0, x0)


def test_accumulate_rejects_bad_buffers():
    acc, wsum = _buffers(4, 4)
    tile, weight = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32)
    with pytest.raises(ModelInputError, match="acc must be float32"):
        accumulate(acc.astype(np.float64), wsum, tile, weight, 0, 0)
    with pytest.raises(ModelInputError, match="wsum must be float32"):
        accumulate(acc, wsum[:3], tile, weight, 0, 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("h, w, tile_px, overlap_px", [(57, 101, 32, 4), (48, 96, 48, 8), (13, 9, 7, 3), (1, 1, 7, 3)])
def test_tiled_reconstruction_is_bit_exact(dtype, h, w, tile_px, overlap_px):
    image = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, size=(h, w, 3), dtype=dtype)
    acc, wsum = _buffers(h, w)
    for _, y0, x0, th, tw, *_ in plan_tiles(h, w, tile_px, overlap_px, 5):
        tile = image[y0 : y0 + th, x0 : x0 + tw]
        accumulate(acc, wsum, tile, feather_weights(th, tw, overlap_px), y0, x0)
    result = normalize(acc, wsum, dtype)
    assert result.dtype == dtype and np.array_equal(result, image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("h, w, tile_px, overlap_px, context_px, scale, ramp_px", [
    (180, 320, 192, 4, 7, 4, 16), (37, 53, 16, 4, 3, 3, 12), (20, 20, 8, 2, 2, 2, 1), (20, 20, 8, 2, 2, 2, 0),
    (9, 9, 4, 3, 0, 1, 40)])
def test_accumulate_tiles_equals_tile_by_tile_accumulate_bit_for_bit(dtype, h, w, tile_px, overlap_px, context_px,
                                                                       scale, ramp_px):
    # accumulate_tiles adds the flat interior of each core without the multiply; acc and wsum
    # must still be exactly what accumulate gives tile by tile, ramps as wide as the tile included.
    geom = plan_tiles(h, w, tile_px, overlap_px, context_px)
    windows = (np.random.default_rng(2).random((len(geom), geom[0, 7] * scale, geom[0, 8] * scale, 3)) * 200).astype(dtype)
    fast, reference = _buffers(h * scale, w * scale), _buffers(h * scale, w * scale)
    accumulate_tiles(*fast, windows, geom, scale, ramp_px)
    for (_, y0, x0, th, tw, wy0, wx0, _, _), window in zip(geom.tolist(), windows):
        oy, ox = (y0 - wy0) * scale, (x0 - wx0) * scale
        core = window[oy : oy + th * scale, ox : ox + tw * scale]
        accumulate(*reference, core, feather_weights(th * scale, tw * scale, ramp_px), y0 * scale, x0 * scale)
    assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1])


# --- stitch_cores: paste the cores, blend only the bands where they overlap ---

def _reference_stitch(parts, scale, ramp, shape, dtype):
    acc, wsum = _buffers(*shape)
    for rows, windows in parts:
        accumulate_tiles(acc, wsum, windows, rows, scale, ramp)
    return acc, wsum


def _random_parts(rng, h, w, tile, overlap, context, scale, dtype, merge_px):
    from vsr_stream.ops.merge import window_batches

    geom = plan_tiles(h, w, tile, overlap, context)
    top = 256 if dtype == np.uint8 else 65536
    return [(rows, rng.integers(0, top, (len(rows), rows[0, 7] * scale, rows[0, 8] * scale, 3)).astype(dtype))
            for rows, _ in window_batches(geom[rng.permutation(len(geom))], merge_px, 4)], geom


@pytest.mark.parametrize("seed", range(8))
def test_stitch_cores_equals_the_whole_canvas_blend_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    tile, overlap, context = int(rng.integers(8, 24)), int(rng.integers(0, 5)), int(rng.integers(0, 4))
    scale, ramp = int(rng.integers(1, 5)), int(rng.integers(0, 9))
    dtype = (np.uint8, np.uint16)[seed % 2]
    parts, _ = _random_parts(rng, h, w, tile, overlap, context, scale, dtype, (0, 40)[seed % 3 == 0])
    shape = (h * scale, w * scale, 3)
    expected = normalize(*_reference_stitch(parts, scale, ramp, shape, dtype), dtype)
    np.testing.assert_array_equal(stitch_cores(parts, scale, ramp, shape, dtype), expected)


@pytest.mark.parametrize("seed", range(6))
def test_stitch_cores_over_a_base_blends_the_cores_behind_only_where_they_meet_the_new_ones(seed):
    """With a base frame: pixels no new core covers keep the base, new cores are blended with the
    cores behind them, as accumulating everything over the base's own cores gives."""
    rng = np.random.default_rng(seed)
    h, w, scale, ramp = 50, 70, 2, 4
    geom = plan_tiles(h, w, 16, 4, 2)
    base = rng.integers(0, 256, (h * scale, w * scale, 3)).astype(np.uint8)
    new = rng.random(len(geom)) < 0.4
    new[0] = True
    cores = geom.copy()
    cores[:, 5:9] = cores[:, 1:5]  # windows = cores
    def windows(rows, img):
        return np.stack([img[y * scale:(y + hh) * scale, x * scale:(x + ww) * scale] for _, y, x, hh, ww, *_ in rows])
    fresh = rng.integers(0, 256, (h * scale, w * scale, 3)).astype(np.uint8)
    parts = [(cores[new], windows(cores[new], fresh))]
    behind = [(cores[~new], windows(cores[~new], base))] if (~new).any() else []
    acc, wsum = _reference_stitch(parts + behind, scale, ramp, base.shape, np.uint8)
    expected = normalize(acc, wsum, np.uint8)
    before = base.copy()
    got = stitch_cores(parts, scale, ramp, base.shape, np.uint8, base=base, behind=behind)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(base, before)


def test_stitch_cores_refuses_an_uncovered_pixel_and_a_core_outside_the_frame():
    rng = np.random.default_rng(0)
    parts, geom = _random_parts(rng, 30, 30, 16, 4, 2, 2, np.uint8, 0)
    with pytest.raises(ModelInputError, match="no tile weight"):
        stitch_cores(parts[:-1], 2, 4, (60, 60, 3), np.uint8)
    with pytest.raises(ModelInputError, match="outside"):
        stitch_cores(parts, 2, 4, (50, 60, 3), np.uint8)
    with pytest.raises(ModelInputError, match="integer"):
        stitch_cores(parts, 2, 4, (60, 60, 3), np.float32)
