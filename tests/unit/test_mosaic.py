"""synth.mosaic: the bench's canvases are photographs at their own resolution, side by side."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vsr_stream.errors import ModelInputError
from vsr_stream.media.synth import mosaic


def _picture(h: int, w: int, seed: int, grey: bool = False) -> np.ndarray:
    shape = (h, w) if grey else (h, w, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_picture_that_covers_the_canvas_is_the_canvas():
    big = _picture(50, 80, 0)
    out = mosaic(iter([big]), 40, 70)
    assert out.shape == (50, 80, 3) and np.array_equal(out, big)


def test_pictures_are_laid_in_rows_at_their_own_resolution_centre_cropped_to_the_first():
    pictures = [_picture(20, 30, 0), _picture(24, 34, 1), _picture(30, 20, 2), _picture(20, 30, 3, grey=True)]
    out = mosaic(itertools.cycle(pictures), 35, 70)  # 2 rows x 3 columns of 20 x 30 cells
    assert out.shape == (40, 90, 3) and out.dtype == np.uint8
    cells = [out[r * 20:(r + 1) * 20, c * 30:(c + 1) * 30] for r in range(2) for c in range(3)]
    assert np.array_equal(cells[0], pictures[0])
    assert np.array_equal(cells[1], pictures[1][2:22, 2:32])  # centre crop, no resampling
    assert np.array_equal(cells[2], np.rot90(pictures[2]))  # a portrait turned to landscape
    assert np.array_equal(cells[3], np.repeat(pictures[3][:, :, None], 3, axis=2))  # grey as RGB
    assert np.array_equal(cells[4], pictures[0]) and np.array_equal(cells[5], cells[1])  # the folder again


def test_a_picture_smaller_than_the_cell_is_enlarged_to_fill_it():
    out = mosaic(iter([_picture(20, 30, 0), _picture(10, 15, 1)]), 20, 60)
    assert out.shape == (20, 60, 3)
    assert out[:, 30:].std() > 0  # filled, not left empty


def test_running_out_of_pictures_is_a_typed_error():
    with pytest.raises(ModelInputError, match="ran out"):
        mosaic(iter([_picture(20, 30, 0), _picture(20, 30, 1)]), 40, 60)
    with pytest.raises(ModelInputError, match="ran out"):
        mosaic(iter([]), 40, 60)
