"""Merged windows: touching tiles of one class run as one window, and the cores come out the same."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.merge import merge_groups, merged_rows, union_rect, upscale_merged
from vsr_stream.stages.classify import cut_windows

SCALE = 2
RADIUS = 2  # of the stand-in network below; the plans use context >= RADIUS


def _net(windows: np.ndarray) -> np.ndarray:
    """A stand-in network with a receptive radius of 2 and zero padding: a 5x5 box sum, then nearest x2."""
    x = windows.astype(np.int64)
    pad = np.pad(x, ((0, 0), (RADIUS, RADIUS), (RADIUS, RADIUS), (0, 0)))
    h, w = x.shape[1:3]
    box = sum(pad[:, dy:dy + h, dx:dx + w] for dy in range(2 * RADIUS + 1) for dx in range(2 * RADIUS + 1))
    return (box // 25).astype(windows.dtype).repeat(SCALE, 1).repeat(SCALE, 2)


def _cores(hr: np.ndarray, geom: np.ndarray) -> list[np.ndarray]:
    out = []
    for row, window in zip(geom.tolist(), hr):
        _, y0, x0, h, w, wy0, wx0, _, _ = row
        oy, ox = (y0 - wy0) * SCALE, (x0 - wx0) * SCALE
        out.append(window[oy:oy + h * SCALE, ox:ox + w * SCALE])
    return out


def _check_groups(geom: np.ndarray, groups: list[np.ndarray], max_px: int) -> None:
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(geom)))  # every tile exactly once
    for g in groups:
        y, x, h, w = union_rect(geom[g])
        covered = np.zeros((h, w), bool)
        for _, _, _, _, _, wy0, wx0, wh, ww in geom[g].tolist():
            covered[wy0 - y:wy0 - y + wh, wx0 - x:wx0 - x + ww] = True
        assert covered.all(), "a merged window must be cut from pixels its tiles' windows hold"
        [(_, cy, cx, ch, cw, wy, wx, wh, ww)] = merged_rows(geom, [g]).tolist()
        assert (wy, wx, wh, ww) == (y, x, h, w)
        cores = np.zeros((ch, cw), bool)
        for _, y0, x0, th, tw, *_ in geom[g].tolist():
            assert cy <= y0 and cx <= x0 and y0 + th <= cy + ch and x0 + tw <= cx + cw
            cores[y0 - cy:y0 - cy + th, x0 - cx:x0 - cx + tw] = True
        assert cores.all(), "a merged tile's core must be its tiles' cores, with no other tile's pixels"
        assert len(g) == 1 or max(h, w) <= max_px


@pytest.mark.parametrize("h, w, tile, overlap, context", [(90, 130, 24, 4, 3), (64, 64, 16, 2, 2), (37, 101, 20, 3, 5)])
def test_groups_cover_their_rectangles_and_every_tile_once(h, w, tile, overlap, context):
    geom = plan_tiles(h, w, tile, overlap, context)
    rng = np.random.default_rng(0)
    for max_px in (0, 30, 64, 1000):
        for keep in (np.ones(len(geom), bool), rng.random(len(geom)) < 0.6):
            rows = geom[keep]
            if not len(rows):
                continue
            groups = merge_groups(rows, max_px)
            _check_groups(rows, groups, max_px)
            if max_px <= 0:
                assert all(len(g) == 1 for g in groups)
    assert len(merge_groups(geom, 10_000)) == 1  # a whole plan is one window: the frame


@pytest.mark.parametrize("max_px", [0, 40, 80, 500])
def test_merged_cores_equal_the_tile_by_tile_cores(max_px):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (70, 110, 3), dtype=np.uint8)
    geom = plan_tiles(70, 110, 20, 4, RADIUS + 1)
    whole = _net(frame[None])[0]
    for keep in (np.ones(len(geom), bool), rng.random(len(geom)) < 0.5):
        rows = geom[keep]
        windows = cut_windows(frame, rows)
        calls = []
        hr = upscale_merged(lambda x: calls.append(x.shape) or _net(x), windows, rows, max_px, 3, SCALE)
        assert hr.shape == (len(rows), windows.shape[1] * SCALE, windows.shape[2] * SCALE, 3)
        alone = np.concatenate([_net(windows[i:i + 3]) for i in range(0, len(rows), 3)])
        for got, want, row in zip(_cores(hr, rows), _cores(alone, rows), rows.tolist()):
            np.testing.assert_array_equal(got, want)
            y0, x0, h, w = row[1:5]
            np.testing.assert_array_equal(got, whole[y0 * SCALE:(y0 + h) * SCALE, x0 * SCALE:(x0 + w) * SCALE])
        assert all(n <= 3 for n, *_ in calls)  # batches stay within max_batch
        if max_px >= 80 and keep.all():
            assert len(calls) < len(rows) / 3  # merging runs fewer, larger windows


def test_without_merging_nothing_is_copied():
    frame = np.zeros((40, 40, 3), np.uint8)
    geom = plan_tiles(40, 40, 16, 2, 2)
    windows = cut_windows(frame, geom)
    out = np.zeros((len(geom), windows.shape[1] * SCALE, windows.shape[2] * SCALE, 3), np.uint8)
    assert upscale_merged(lambda x: out, windows, geom, 0, 64, SCALE) is out
