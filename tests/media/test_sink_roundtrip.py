"""Source -> sink -> source: lossless is bit exact, passthrough packets are untouched,
timestamps (CFR and VFR) survive, and so do colour tags, rotation, aspect ratio, language,
disposition, metadata and chapters."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest

from vsr_stream.media import synth

from .helpers import arrays_equal, demuxed, frame_times, read_items, transcode


@pytest.mark.parametrize(
    "ext, bit_depth, codec",
    [("mkv", 8, "ffv1"), ("avi", 8, "ffv1"), ("mp4", 8, "h264"), ("mkv", 10, "ffv1")],
)
def test_lossless_is_bit_exact(tmp_path, ext, bit_depth, codec):
    clip = synth.write_clip(tmp_path / "in.mkv", bit_depth=bit_depth, audio=ext != "avi")
    _, frames, _ = transcode(clip, tmp_path / f"out.{ext}", lossless=True)
    info, out, _ = read_items(tmp_path / f"out.{ext}")
    assert info.video.codec_name == codec
    assert out[0].array.dtype == (np.uint8 if bit_depth == 8 else np.uint16)
    assert arrays_equal(frames, out)


@pytest.mark.parametrize("ext", ["mkv", "mp4", "mov"])
def test_audio_packets_are_copied_untouched(tmp_path, ext):
    clip = synth.write_clip(tmp_path / f"in.{ext}")
    _, _, packets = transcode(clip, tmp_path / f"out.{ext}")
    source, copied = demuxed(clip, "audio"), demuxed(tmp_path / f"out.{ext}", "audio")
    assert len(copied) == len(packets) == len(source)
    assert [(p, d, tb, data) for p, d, tb, data in copied] == source


def test_webm_keeps_opus(tmp_path):
    clip = synth.write_clip(tmp_path / "in.webm", codec="libvpx-vp9")
    transcode(clip, tmp_path / "out.webm")
    assert demuxed(tmp_path / "out.webm", "audio") == demuxed(clip, "audio")
    assert read_items(tmp_path / "out.webm")[0].video.codec_name == "vp9"


def test_subtitles_pass_through_mkv(tmp_path):
    clip = synth.write_clip(tmp_path / "in.mkv", subtitles=True)
    transcode(clip, tmp_path / "out.mkv")
    subs = demuxed(tmp_path / "out.mkv", "subtitles")
    assert subs == demuxed(clip, "subtitles") and [s[3] for s in subs] == [b"first cue", b"second cue"]


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
@pytest.mark.parametrize("vfr", [False, True])
def test_timestamps_survive(tmp_path, ext, vfr):
    clip = synth.write_clip(tmp_path / f"in.{ext}", vfr=vfr, frames=16)
    _, frames, _ = transcode(clip, tmp_path / f"out.{ext}")
    _, out, _ = read_items(tmp_path / f"out.{ext}")
    assert len(out) == 16 and frame_times(out) == frame_times(frames)
    if vfr:
        assert frame_times(frames) == [Fraction(p, 1000) for p in synth.frame_times(16, Fraction(24), True)[1]]


def test_10bit_in_10bit_out(tmp_path):
    clip = synth.write_clip(tmp_path / "in.mkv", bit_depth=10)
    _, frames, _ = transcode(clip, tmp_path / "out.mkv")
    info, out, _ = read_items(tmp_path / "out.mkv")
    assert info.video.pix_fmt == "yuv420p10le" and out[0].array.dtype == np.uint16
    error = np.abs(out[0].array.astype(float) - frames[0].array.astype(float)).mean()
    assert error < 4 * 257  # two generations of 4:2:0


def test_descriptive_data_is_kept(tmp_path):
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    clip = synth.write_clip(tmp_path / "in.mkv", color=tags, rotation_deg=90, language="fra", chapters=True, subtitles=True)
    info = read_items(clip)[0]
    video = dataclasses.replace(
        info.video, sample_aspect_ratio=Fraction(4, 3), disposition=["default", "original"], metadata={"title": "clip"}
    )
    passthrough = (dataclasses.replace(info.passthrough[0], disposition=["default", "comment"]), info.passthrough[1])
    changed = dataclasses.replace(info, video=video, passthrough=passthrough, container_metadata={"title": "film"})
    transcode(clip, tmp_path / "out.mkv", info=changed)
    out = read_items(tmp_path / "out.mkv")[0]
    v = out.video
    assert (v.colorspace, v.color_range, v.color_primaries, v.color_trc) == (1, 1, 1, 1)
    assert (v.rotation_deg, v.sample_aspect_ratio, v.language) == (90, Fraction(4, 3), "fra")
    assert v.disposition == ["default", "original"] and v.metadata["title"] == "clip"
    assert [(s.type, s.language, s.disposition) for s in out.passthrough] == [
        ("audio", "fra", ["default", "comment"]),
        ("subtitle", None, []),
    ]
    assert out.container_metadata["title"] == "film"
    assert [(c["start"], c["end"], c["metadata"]) for c in out.chapters] == [
        (c["start"], c["end"], c["metadata"]) for c in info.chapters
    ]


def test_mp4_keeps_rotation_language_chapters(tmp_path):
    clip = synth.write_clip(tmp_path / "in.mp4", rotation_deg=-90, language="deu", chapters=True)
    transcode(clip, tmp_path / "out.mp4")
    info, out = read_items(clip)[0], read_items(tmp_path / "out.mp4")[0]
    assert out.video.rotation_deg == info.video.rotation_deg == -90
    assert out.video.language == "deu" and out.passthrough[0].language == "deu"
    assert [c["metadata"] for c in out.chapters] == [c["metadata"] for c in info.chapters]


def _file_order_is_interleaved(path) -> bool:
    with av.open(str(path)) as container:
        times = [float(p.dts * p.time_base) for p in container.demux() if p.dts is not None and p.size]
    return all(b >= a - 0.05 for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("order", ["demux", "packets_first", "frames_first"])
def test_output_is_interleaved_whatever_the_delivery_order(tmp_path, order):
    clip = synth.write_clip(tmp_path / "in.mkv", frames=48, subtitles=True)
    transcode(clip, tmp_path / "out.mkv", order=order)
    assert _file_order_is_interleaved(tmp_path / "out.mkv")
    assert demuxed(tmp_path / "out.mkv", "audio") == demuxed(clip, "audio")


def test_attachments_are_carried(tmp_path):
    clip = synth.write_clip(tmp_path / "plain.mkv")
    with av.open(str(clip)) as src, av.open(str(tmp_path / "in.mkv"), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        out.add_attachment("font.ttf", "font/ttf", b"FONT" * 50)
        for packet in src.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    info, _, _ = transcode(tmp_path / "in.mkv", tmp_path / "out.mkv")
    assert [s.type for s in info.passthrough] == ["audio", "attachment"]
    with av.open(str(tmp_path / "out.mkv")) as container:
        attachment = container.streams.attachments[0]
        assert attachment.name == "font.ttf" and attachment.data == b"FONT" * 50
