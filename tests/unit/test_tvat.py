"""TVAT reference: VSP by hand and by brute force, tile sums, class thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.tvat import classify, tile_tvat, vsp

# One pixel (1, 2, 3) on black: every pair touching it costs 1 + 4 + 9 = 14.
PAIR = 1**2 + 2**2 + 3**2


def _one_bright(h: int, w: int, y: int, x: int) -> np.ndarray:
    frame = np.zeros((h, w, 3), dtype=np.uint8)
    frame[y, x] = (1, 2, 3)
    return frame


def _brute_vsp(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.int64)
    h, w = f.shape[:2]
    out = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    qy, qx = y + dy, x + dx
                    if (dy or dx) and 0 <= qy < h and 0 <= qx < w:
                        out[y, x] += int(((f[y, x] - f[qy, qx]) ** 2).sum())
    return out


def test_vsp_hand_computed_corner_pixel():
    # The corner pixel has only 3 neighbours, all black: 3 * 14. Its three neighbours
    # (two edge pixels and the centre) each see it once; pixels not touching it are 0.
    expected = np.array([[3 * PAIR, PAIR, 0], [PAIR, PAIR, 0], [0, 0, 0]], dtype=np.int64)
    result = vsp(_one_bright(3, 3, 0, 0))
    assert result.dtype == np.int64
    assert np.array_equal(result, expected)


def test_vsp_hand_computed_centre_pixel():
    expected = np.full((3, 3), PAIR, dtype=np.int64)
    expected[1, 1] = 8 * PAIR
    assert np.array_equal(vsp(_one_bright(3, 3, 1, 1)), expected)


def test_vsp_hand_computed_single_row():
    # A 1x3 row: the middle pixel has 2 neighbours, the ends 1 each.
    frame = np.array([[[0, 0, 0], [10, 0, 0], [10, 0, 4]]], dtype=np.uint8)
    assert vsp(frame).tolist() == [[100, 100 + 16, 16]]


def test_vsp_one_pixel_frame_is_zero():
    assert vsp(np.full((1, 1, 3), 200, dtype=np.uint8)).tolist() == [[0]]


@pytest.mark.parametrize("h, w", [(1, 1), (1, 6), (6, 1), (2, 2), (4, 7), (9, 6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_vsp_matches_brute_force(h, w, seed):
    frame = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    assert np.array_equal(vsp(frame), _brute_vsp(frame))


def test_vsp_extreme_values_do_not_overflow():
    frame = np.zeros((3, 3, 3), dtype=np.uint8)
    frame[1, 1] = 255
    assert vsp(frame)[1, 1] == 8 * 3 * 255**2


def test_vsp_uint16_equals_uint8_of_high_byte():
    frame16 = np.random.default_rng(2).integers(0, 65536, size=(8, 11, 3), dtype=np.uint16)
    assert np.array_equal(vsp(frame16), vsp((frame16 >> 8).astype(np.uint8)))


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_vsp_rejects_bad_frames(frame):
    with pytest.raises(ModelInputError):
        vsp(frame)


def _whole_frame_geom(h: int, w: int) -> np.ndarray:
    return np.array([[0, 0, 0, h, w, 0, 0, h, w]], dtype=np.int32)


@pytest.mark.parametrize(
    "threshold, expected_sum",
    [(0, 6 * PAIR), (PAIR, 6 * PAIR), (PAIR + 1, 3 * PAIR), (3 * PAIR, 3 * PAIR), (3 * PAIR + 1, 0)],
)
def test_tile_tvat_threshold_is_inclusive(threshold, expected_sum):
    vsp_map = vsp(_one_bright(3, 3, 0, 0))
    result = tile_tvat(vsp_map, _whole_frame_geom(3, 3), threshold)
    assert result.dtype == np.float64
    assert result.tolist() == [expected_sum / 9]


def test_tile_tvat_hand_computed_overlapping_tiles():
    # Tile 2, no overlap on a 3x3 frame: cores start at 0 and 1 on each axis (edge aligned).
    geom = plan_tiles(3, 3, 2, 0, 0)
    assert geom[:, 1:5].tolist() == [[0, 0, 2, 2], [0, 1, 2, 2], [1, 0, 2, 2], [1, 1, 2, 2]]
    vsp_map = vsp(_one_bright(3, 3, 0, 0))
    sums = [3 * PAIR + 3 * PAIR, PAIR + PAIR, PAIR + PAIR, PAIR]
    assert tile_tvat(vsp_map, geom, 0).tolist() == [s / 4 for s in sums]
    assert tile_tvat(vsp_map, geom, PAIR + 1).tolist() == [3 * PAIR / 4, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("tile_px, overlap_px", [(4, 1), (5, 0), (16, 2)])
def test_tile_tvat_matches_direct_sums(tile_px, overlap_px):
    rng = np.random.default_rng(3)
    vsp_map = vsp(rng.integers(0, 256, size=(13, 19, 3), dtype=np.uint8))
    threshold = int(np.median(vsp_map))
    geom = plan_tiles(13, 19, tile_px, overlap_px, 2)
    expected = []
    for _, y0, x0, h, w, *_ in geom:
        core = vsp_map[y0 : y0 + h, x0 : x0 + w]
        expected.append(core[core >= threshold].sum() / (h * w))
    assert tile_tvat(vsp_map, geom, threshold).tolist() == expected


def test_tile_tvat_rejects_core_outside_map():
    with pytest.raises(ModelInputError, match="outside"):
        tile_tvat(np.zeros((3, 3), np.int64), _whole_frame_geom(4, 3), 0)
    with pytest.raises(ModelInputError, match=r"\(n, 9\)"):
        tile_tvat(np.zeros((3, 3), np.int64), np.zeros((1, 5), np.int32), 0)


def test_classify_boundaries_go_up():
    values = np.array([0.0, 0.999, 1.0, 2.4, 2.5, 3.0])
    result = classify(values, [1.0, 2.5])
    assert result.dtype == np.int8
    assert result.tolist() == [0, 0, 1, 1, 2, 2]


def test_classify_without_thresholds_is_all_class_zero():
    result = classify(np.array([0.0, 5.0, 1e9]), [])
    assert result.dtype == np.int8 and result.tolist() == [0, 0, 0]


def test_classify_rejects_unsorted_thresholds():
    with pytest.raises(ConfigError, match="ascending"):
        classify(np.array([1.0]), [2.0, 1.0])
