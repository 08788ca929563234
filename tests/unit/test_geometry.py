"""Tile geometry: coverage, edge alignment, window shape and placement, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.errors import ConfigError
from vsr_stream.geometry import axis_starts, plan_tiles
from vsr_stream.messages import GEOM_COLUMNS

SIZES = [(1, 1), (1, 17), (17, 1), (2, 3), (7, 7), (31, 33), (32, 32), (48, 96), (57, 101), (64, 64), (100, 37)]
CONFIGS = [(32, 4, 8), (48, 8, 0), (7, 3, 5), (1, 0, 0), (5, 4, 2), (16, 0, 3)]


def _balanced_core(dim: int, tile_px: int, overlap_px: int) -> int:
    """The core size plan_tiles promises: n full tiles' count, evenly resized."""
    n = len(axis_starts(dim, tile_px, tile_px - overlap_px))
    return -(-(dim + (n - 1) * overlap_px) // n)


def test_balanced_cores_by_hand():
    # 72 px at tile 64 / overlap 4 needs two tiles: two of 38 px, not two of 64 overlapping by 56
    c = _cols(plan_tiles(72, 64, 64, 4, 7))
    assert sorted(set(c["y0"].tolist())) == [0, 34] and set(c["h"].tolist()) == {38}
    assert set(c["wh"].tolist()) == {52} and set(c["w"].tolist()) == {64} and set(c["ww"].tolist()) == {64}
    # 270 rows at tile 64: five tiles of 58 rows with stride 54
    c = _cols(plan_tiles(270, 8, 64, 4, 7))
    assert c["y0"].tolist() == [0, 54, 108, 162, 212] and set(c["h"].tolist()) == {58}


def _cols(geom: np.ndarray) -> dict[str, np.ndarray]:
    return {name: geom[:, i] for i, name in enumerate(GEOM_COLUMNS)}


@pytest.mark.parametrize("tile_px, overlap_px, context_px", CONFIGS)
@pytest.mark.parametrize("h, w", SIZES)
def test_plan_covers_every_pixel_and_stays_inside(h, w, tile_px, overlap_px, context_px):
    geom = plan_tiles(h, w, tile_px, overlap_px, context_px)
    assert geom.dtype == np.int32 and geom.shape[1] == len(GEOM_COLUMNS)
    c = _cols(geom)
    assert np.array_equal(c["tile_id"], np.arange(len(geom)))
    cover = np.zeros((h, w), dtype=np.int64)
    for _, y0, x0, th, tw, wy0, wx0, wh, ww in geom:
        assert 0 <= y0 and y0 + th <= h and 0 <= x0 and x0 + tw <= w
        assert 0 <= wy0 and wy0 + wh <= h and 0 <= wx0 and wx0 + ww <= w
        assert wy0 <= y0 and y0 + th <= wy0 + wh and wx0 <= x0 and x0 + tw <= wx0 + ww
        cover[y0 : y0 + th, x0 : x0 + tw] += 1
    assert cover.min() >= 1


@pytest.mark.parametrize("tile_px, overlap_px, context_px", CONFIGS)
@pytest.mark.parametrize("h, w", SIZES)
def test_plan_shapes_order_and_edges(h, w, tile_px, overlap_px, context_px):
    c = _cols(plan_tiles(h, w, tile_px, overlap_px, context_px))
    core_h, core_w = _balanced_core(h, tile_px, overlap_px), _balanced_core(w, tile_px, overlap_px)
    assert np.all(c["h"] == core_h) and np.all(c["w"] == core_w)
    assert np.all(c["wh"] == min(core_h + 2 * context_px, h))
    assert np.all(c["ww"] == min(core_w + 2 * context_px, w))
    assert (c["y0"] + c["h"]).max() == h and (c["x0"] + c["w"]).max() == w
    # balancing keeps the tile count of full-size tiles
    assert len(np.unique(c["y0"])) == len(axis_starts(h, tile_px, tile_px - overlap_px))
    assert len(np.unique(c["x0"])) == len(axis_starts(w, tile_px, tile_px - overlap_px))
    order = np.lexsort((c["x0"], c["y0"]))
    assert np.array_equal(order, np.arange(len(order)))


@pytest.mark.parametrize("tile_px, overlap_px, context_px", CONFIGS)
def test_window_is_clamped_core_minus_context(tile_px, overlap_px, context_px):
    h, w = 57, 101
    c = _cols(plan_tiles(h, w, tile_px, overlap_px, context_px))
    assert np.array_equal(c["wy0"], np.clip(c["y0"] - context_px, 0, h - c["wh"]))
    assert np.array_equal(c["wx0"], np.clip(c["x0"] - context_px, 0, w - c["ww"]))


@pytest.mark.parametrize("dim", [1, 5, 7, 8, 13, 32, 33, 64, 65, 100])
@pytest.mark.parametrize("tile, stride", [(7, 4), (8, 8), (32, 28), (1, 1), (5, 1)])
def test_axis_starts_regular_then_edge_aligned(dim, tile, stride):
    starts = axis_starts(dim, tile, stride)
    assert starts.dtype == np.int64 and starts[0] == 0
    if dim <= tile:
        assert starts.tolist() == [0]
        return
    assert starts[-1] == dim - tile
    assert len(np.unique(starts)) == len(starts)
    assert np.all(np.diff(starts[:-1]) == stride)
    assert 0 < starts[-1] - starts[-2] <= stride
    covered = np.zeros(dim, dtype=bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_consecutive_regular_tiles_overlap_by_overlap_px():
    tile_px, overlap_px = 32, 4
    c = _cols(plan_tiles(200, 200, tile_px, overlap_px, 8))
    xs = np.unique(c["x0"])
    assert xs.tolist() == [0, 28, 56, 84, 112, 140, 168]
    overlaps = xs[:-2] + tile_px - xs[1:-1]
    assert np.all(overlaps == overlap_px)
    assert xs[-1] + tile_px == 200


def test_exact_multiple_has_no_extra_tile():
    c = _cols(plan_tiles(64, 96, 32, 0, 0))
    assert np.unique(c["y0"]).tolist() == [0, 32]
    assert np.unique(c["x0"]).tolist() == [0, 32, 64]


def test_smaller_than_tile_is_one_tile_of_frame_size():
    geom = plan_tiles(5, 9, 32, 4, 8)
    assert geom.tolist() == [[0, 0, 0, 5, 9, 0, 0, 5, 9]]


def test_small_frame_known_plan():
    # 10 wide, tile 4, overlap 1 -> stride 3: starts 0, 3, then edge-aligned 6 (no 9).
    geom = plan_tiles(1, 10, 4, 1, 1)
    assert geom[:, 2].tolist() == [0, 3, 6]
    assert geom[:, 6].tolist() == [0, 2, 4]  # window 6 wide: clamp(x0 - 1, 0, 4)
    assert geom[:, 8].tolist() == [6, 6, 6]


@pytest.mark.parametrize(
    "args, field",
    [
        ((0, 5, 4, 0, 0), "frame size"),
        ((5, 0, 4, 0, 0), "frame size"),
        ((5, 5, 0, 0, 0), "tile_px"),
        ((5, 5, 4, 4, 0), "overlap_px"),
        ((5, 5, 4, -1, 0), "overlap_px"),
        ((5, 5, 4, 1, -1), "context_px"),
    ],
)
def test_bad_arguments_raise_config_error(args, field):
    with pytest.raises(ConfigError, match=field):
        plan_tiles(*args)
    assert issubclass(ConfigError, ValueError)


def test_axis_starts_rejects_bad_stride():
    with pytest.raises(ConfigError, match="stride"):
        axis_starts(10, 4, 0)


def test_intersections_of_rectangles():
    from vsr_stream.geometry import intersections

    a = np.array([[0, 0, 4, 4], [10, 10, 2, 2]])
    b = np.array([[2, 3, 4, 4], [4, 0, 1, 1]])  # the second only touches a[0]'s bottom edge: no shared pixel
    box, meet = intersections(a, b)
    assert meet.tolist() == [[True, False], [False, False]]
    assert box[0, 0].tolist() == [2, 3, 4, 4]  # top, left, bottom, right
