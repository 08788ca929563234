"""The first frame fixes the output size: odd sizes are padded to even for 4:2:0, later
frames of another size are resized (one warning, counted); pts-less frames follow on."""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import pytest

from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError
from vsr_stream.media import VideoFrameItem, open_sink, synth

from .helpers import read_items


def _frames(sizes, pts=None):
    return [
        VideoFrameItem(i, i if pts is None else pts[i], Fraction(1, 24), 1, synth.picture(i, h, w))
        for i, (h, w) in enumerate(sizes)
    ]


def _write(tmp_path, name, frames, caplog=None, **encode):
    info = read_items(synth.write_clip(tmp_path / "src.mkv", audio=False, frames=2))[0]
    sink = open_sink(str(tmp_path / name), EncodeConfig(**encode), info, 1)
    for f in frames:
        sink.write_frame(f)
    sink.close()
    return read_items(tmp_path / name)


def _smooth(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2, y * 3, 128 + (x - y)], axis=-1).clip(0, 255).astype(np.uint8)


def test_odd_size_is_padded_by_replication(tmp_path):
    picture = _smooth(63, 95)
    frames = [VideoFrameItem(i, i, Fraction(1, 24), 1, picture) for i in range(3)]
    _, out, _ = _write(tmp_path, "out.mkv", frames, crf=0)
    assert out[0].array.shape == (64, 96, 3)
    padded = out[0].array.astype(int)
    assert np.abs(padded[:63, :95] - picture).mean() < 1.5
    assert np.abs(padded[63, :95] - picture[62]).mean() < 1.5
    assert np.abs(padded[:63, 95] - picture[:, 94]).mean() < 1.5


def test_odd_size_kept_for_rgb_lossless(tmp_path):
    frames = _frames([(63, 95)] * 2)
    _, out, _ = _write(tmp_path, "out.mkv", frames, lossless=True)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(frames, out))


def test_size_change_is_resized_with_one_warning(tmp_path, caplog):
    frames = _frames([(64, 96), (32, 48), (80, 100), (64, 96)])
    with caplog.at_level(logging.WARNING, logger="vsr_stream.media"):
        _, out, _ = _write(tmp_path, "out.mkv", frames, lossless=True)
    assert [f.array.shape for f in out] == [(64, 96, 3)] * 4
    assert caplog.text.count("resized to the output size") == 1
    assert "2 frame(s) were resized" in caplog.text
    assert np.array_equal(out[3].array, frames[3].array)


def test_missing_pts_follow_the_previous_frame(tmp_path):
    frames = _frames([(64, 96)] * 4, pts=[0, None, None, 5])
    _, out, _ = _write(tmp_path, "out.mkv", frames, lossless=True)
    # the source time base is Matroska's 1/1000: one 1/24 s frame is 42 ticks
    assert [f.pts for f in out] == [0, 42, 84, 208]


def test_non_increasing_pts_is_an_error(tmp_path):
    with pytest.raises(SinkError, match="not after the previous frame"):
        _write(tmp_path, "out.mkv", _frames([(64, 96)] * 2, pts=[3, 3]), lossless=True)


def test_bad_array_is_rejected(tmp_path):
    info = read_items(synth.write_clip(tmp_path / "src.mkv", audio=False, frames=2))[0]
    sink = open_sink(str(tmp_path / "out.mkv"), EncodeConfig(), info, 1)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 or uint16"):
        sink.write_frame(VideoFrameItem(0, 0, Fraction(1, 24), 1, np.zeros((4, 4, 3), np.float32)))
    sink.abort()
