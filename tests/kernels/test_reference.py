"""The NumPy references added for the kernels: tile_mad and accumulate_tiles (no harness needed)."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.errors import ModelInputError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.blend import accumulate, accumulate_tiles, feather_weights
from vsr_stream.ops.tvat import tile_mad


def _frame(h: int, w: int, seed: int, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, size=(h, w, 3), dtype=dtype)


def test_tile_mad_hand_computed():
    frame = np.zeros((2, 3, 3), np.uint8)
    prev = frame.copy()
    prev[0, 0] = (3, 0, 0)  # in tile 0 only
    prev[1, 2] = (0, 6, 255)  # in tile 1 only
    geom = plan_tiles(2, 3, 2, 0, 0)  # cores (0, 0) and (0, 1), 2x2, overlapping in column 1
    assert tile_mad(frame, prev, geom).tolist() == [3 / 12, 261 / 12]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tile_mad_matches_brute_force(dtype):
    frame, prev = _frame(11, 14, 0, dtype), _frame(11, 14, 1, dtype)
    geom = plan_tiles(11, 14, 5, 2, 1)
    shift = 8 if dtype == np.uint16 else 0
    expected = []
    for _, y0, x0, h, w, *_ in geom:
        a = frame[y0 : y0 + h, x0 : x0 + w].astype(np.int64) >> shift
        b = prev[y0 : y0 + h, x0 : x0 + w].astype(np.int64) >> shift
        expected.append(np.abs(a - b).sum() / (3 * h * w))
    result = tile_mad(frame, prev, geom)
    assert result.dtype == np.float64 and result.tolist() == expected
    assert tile_mad(frame, frame, geom).tolist() == [0.0] * len(geom)


def test_tile_mad_rejects_bad_input():
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ModelInputError, match="prev"):
        tile_mad(frame, frame.astype(np.uint16), plan_tiles(4, 4, 2, 0, 0))
    with pytest.raises(ModelInputError, match="outside"):
        tile_mad(frame, frame, plan_tiles(5, 4, 2, 0, 0))


@pytest.mark.parametrize("scale, ramp_px", [(1, 0), (2, 4), (3, 2)])
def test_accumulate_tiles_is_accumulate_per_tile(scale, ramp_px):
    # The stitch stage's loop, written out: crop the core from each window, weight, add.
    geom = plan_tiles(13, 19, 5, 2, 1)
    wh, ww = int(geom[0, 7]) * scale, int(geom[0, 8]) * scale
    windows = np.random.default_rng(2).integers(0, 256, size=(len(geom), wh, ww, 3), dtype=np.uint8)
    acc, wsum = np.zeros((13 * scale, 19 * scale, 3), np.float32), np.zeros((13 * scale, 19 * scale), np.float32)
    for (_, y0, x0, h, w, wy0, wx0, _, _), window in zip(geom, windows):
        core = window[(y0 - wy0) * scale : (y0 - wy0 + h) * scale, (x0 - wx0) * scale : (x0 - wx0 + w) * scale]
        accumulate(acc, wsum, core, feather_weights(h * scale, w * scale, ramp_px), y0 * scale, x0 * scale)
    acc2, wsum2 = np.zeros_like(acc), np.zeros_like(wsum)
    accumulate_tiles(acc2, wsum2, windows, geom, scale, ramp_px)
    assert np.array_equal(acc2, acc) and np.array_equal(wsum2, wsum)


def test_accumulate_tiles_rejects_bad_batches():
    geom = plan_tiles(8, 8, 4, 0, 1)  # windows 6x6
    windows = np.zeros((len(geom), 6, 6, 3), np.uint8)
    acc, wsum = np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.float32)
    with pytest.raises(ModelInputError, match="windows must be"):
        accumulate_tiles(acc, wsum, windows[:-1], geom, 1, 0)
    with pytest.raises(ModelInputError, match="outside its 5x6 window"):
        accumulate_tiles(acc, wsum, windows[:, :5], geom, 1, 0)
    with pytest.raises(ModelInputError, match="scale >= 1"):
        accumulate_tiles(acc, wsum, windows, geom, 0, 0)
    with pytest.raises(ModelInputError, match="wsum must be"):
        accumulate_tiles(acc, wsum[:4], windows, geom, 1, 0)
    assert not acc.any() and not wsum.any()  # checked before anything is added
