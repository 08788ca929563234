"""Image inputs: a folder (natural order), one file, a glob, a printf pattern; each image
keeps its size; 16-bit PNGs give uint16; grey, palette and alpha images become RGB."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from vsr_stream.errors import SourceError
from vsr_stream.media import synth

from .helpers import read_items


def test_folder_of_different_sizes_in_natural_order(tmp_path):
    sizes = [(20, 30), (17, 9), (33, 33)]
    paths = synth.write_images(tmp_path / "in", sizes)
    paths[2].rename(tmp_path / "in" / "img_10.png")
    paths[1].rename(tmp_path / "in" / "img_2.png")
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    info, frames, packets = read_items(tmp_path / "in")
    assert info.kind == "images" and not packets and not info.passthrough
    assert info.image_names == ("img_000.png", "img_2.png", "img_10.png")
    assert [f.name for f in frames] == list(info.image_names)
    assert [f.array.shape[:2] for f in frames] == sizes
    assert [f.index for f in frames] == [0, 1, 2] and [f.pts for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[0].array, synth.picture(0, 20, 30))


def test_single_image_glob_and_printf(tmp_path):
    synth.write_images(tmp_path, [(8, 8), (9, 9), (10, 10)])
    assert [f.name for f in read_items(tmp_path / "img_001.png")[1]] == ["img_001.png"]
    assert [f.name for f in read_items(tmp_path / "img_00[02].png")[1]] == ["img_000.png", "img_002.png"]
    assert [f.array.shape[0] for f in read_items(tmp_path / "*.png")[1]] == [8, 9, 10]
    assert [f.name for f in read_items(tmp_path / "img_%03d.png")[1]] == ["img_000.png", "img_001.png", "img_002.png"]


def test_16bit_png_gives_uint16(tmp_path):
    synth.write_images(tmp_path, [(12, 14)], bit_depth=16)
    info, frames, _ = read_items(tmp_path / "img_000.png")
    assert info.video.bit_depth == 16 and frames[0].array.dtype == np.uint16
    assert np.array_equal(frames[0].array, synth.picture(0, 12, 14, bit_depth=16))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA"])
def test_grey_palette_alpha_become_rgb(tmp_path, mode, caplog):
    rgb = synth.picture(0, 10, 12)
    Image.fromarray(rgb).convert(mode).save(tmp_path / "x.png")
    with caplog.at_level(logging.WARNING, logger="vsr_stream.media"):
        _, frames, _ = read_items(tmp_path / "x.png")
    expected = np.asarray(Image.open(tmp_path / "x.png").convert("RGB"))
    assert frames[0].array.shape == (10, 12, 3) and np.array_equal(frames[0].array, expected)
    assert ("alpha channel" in caplog.text) == (mode in ("RGBA", "LA"))


def test_jpeg_full_range_input(tmp_path):
    rgb = synth.picture(0, 16, 16)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=98, subsampling=0)
    _, frames, _ = read_items(tmp_path / "x.jpg")
    expected = np.asarray(Image.open(tmp_path / "x.jpg").convert("RGB")).astype(int)
    assert np.abs(frames[0].array.astype(int) - expected).mean() < 1.5


def test_broken_image_in_a_folder(tmp_path):
    synth.write_images(tmp_path, [(8, 8), (8, 8)])
    (tmp_path / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(SourceError, match="img_001.png: cannot read image"):
        read_items(tmp_path)
