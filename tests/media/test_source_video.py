"""Video sources: frames as RGB arrays with their own timestamps, passthrough packets
untouched, and a SourceInfo that describes the file."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vsr_stream.config import DecodeConfig
from vsr_stream.media import PacketItem, VideoFrameItem, open_source, synth
from vsr_stream.media.colour import sws_matrix

from .helpers import demuxed, frame_times, read_items


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm"])
def test_frames_and_packets_in_demux_order(tmp_path, ext):
    codec = "libvpx-vp9" if ext == "webm" else "libx264"
    clip = synth.write_clip(tmp_path / f"c.{ext}", codec=codec, frames=10)
    with open_source(str(clip), DecodeConfig()) as source:
        items = list(source.items())
    frames = [i for i in items if isinstance(i, VideoFrameItem)]
    assert [f.index for f in frames] == list(range(10))
    assert all(f.array.shape == (64, 96, 3) and f.array.dtype == np.uint8 for f in frames)
    assert frame_times(frames) == [Fraction(i, 24) for i in range(10)] or ext != "mp4"
    packets = [i for i in items if isinstance(i, PacketItem)]
    assert packets and {p.stream_index for p in packets} == {1}
    assert [(p.pts, p.data) for p in packets] == [(pts, data) for pts, _, _, data in demuxed(clip, "audio")]
    info = source.info
    assert (info.kind, info.video.width, info.video.height, info.video.bit_depth) == ("video", 96, 64, 8)
    assert [s.type for s in info.passthrough] == ["audio"]


def test_pictures_match_the_encoded_content(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv", pix_fmt="yuv444p", audio=False, frames=3)
    _, frames, _ = read_items(clip)
    for f in frames:
        error = np.abs(f.array.astype(int) - synth.picture(f.index, 64, 96).astype(int))
        assert error.mean() < 2.5


def _mean_error(array, reference):
    return np.abs(array.astype(float) - reference.astype(float)).mean()


@pytest.mark.parametrize("color_range", [1, 2])
def test_bt709_source_converts_with_bt709(tmp_path, color_range):
    """A BT.709 clip decoded with the BT.601 matrix shifts saturated colours; ours must not."""
    tags = {"colorspace": 1, "color_range": color_range, "color_primaries": 1, "color_trc": 1}
    clip = synth.write_clip(tmp_path / "c.mkv", pix_fmt="yuv444p", audio=False, frames=2, color=tags)
    info, frames, _ = read_items(clip)
    assert (info.video.colorspace, info.video.color_range) == (1, color_range)
    reference = synth.picture(0, 64, 96)
    with av.open(str(clip)) as container:
        first = next(container.decode(video=0))
    wrong = first.reformat(format="rgb24", src_colorspace=sws_matrix(5), src_color_range=color_range).to_ndarray()
    ours = _mean_error(frames[0].array, reference)
    assert ours < 2.5 and ours < _mean_error(wrong, reference) - 1


def test_10bit_source_gives_uint16(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv", bit_depth=10, pix_fmt="yuv444p10le", audio=False, frames=3)
    info, frames, _ = read_items(clip)
    assert info.video.pix_fmt == "yuv444p10le" and info.video.bit_depth == 16
    assert all(f.array.dtype == np.uint16 for f in frames)
    reference = synth.picture(0, 64, 96, bit_depth=16)
    assert frames[0].array.max() > 60000 and _mean_error(frames[0].array, reference) < 2.5 * 257


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_vfr_timestamps_are_the_frames_own(tmp_path, ext):
    clip = synth.write_clip(tmp_path / f"c.{ext}", vfr=True, frames=8)
    _, frames, _ = read_items(clip)
    _, pts, _ = synth.frame_times(8, Fraction(24), vfr=True)
    assert frame_times(frames) == [Fraction(p, 1000) for p in pts]


def test_info_reads_tags_rotation_language_chapters(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv", subtitles=True, chapters=True, language="fra", rotation_deg=90)
    info, _, packets = read_items(clip)
    assert info.video.rotation_deg == 90 and info.video.language == "fra"
    assert [(s.index, s.type, s.language) for s in info.passthrough] == [(1, "audio", "fra"), (2, "subtitle", None)]
    assert {p.stream_index for p in packets} == {1, 2}
    assert [c["metadata"]["title"] for c in info.chapters] == ["Chapter 1", "Chapter 2"]
    assert info.video.frame_rate == 24 and info.video.time_base == Fraction(1, 1000)


def test_threads_setting_is_accepted(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mp4", audio=False, frames=4)
    _, frames, _ = read_items(clip)
    with open_source(str(clip), DecodeConfig(threads=1)) as source:
        single = [i for i in source.items() if isinstance(i, VideoFrameItem)]
    assert all(np.array_equal(a.array, b.array) for a, b in zip(frames, single)) and len(single) == 4
