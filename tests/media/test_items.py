"""SourceInfo travels as JSON: to_wire / from_wire round trip."""

from __future__ import annotations

import json
from fractions import Fraction

from vsr_stream.media import SourceInfo, StreamInfo, VideoInfo, synth

from .helpers import read_items


def test_wire_round_trip_of_a_constructed_info():
    info = SourceInfo(
        url="rtsp://u:p@h/x",
        kind="video",
        video=VideoInfo(
            width=96, height=64, time_base=Fraction(1, 90000), frame_rate=Fraction(30000, 1001),
            pix_fmt="yuv420p10le", bit_depth=16, color_range=1, colorspace=9, color_primaries=9,
            color_trc=16, rotation_deg=-90.0, sample_aspect_ratio=Fraction(4, 3), frame_count=10,
            codec_name="hevc", language="fra", metadata={"title": "t"}, disposition=["default", "forced"],
        ),
        passthrough=(StreamInfo(1, "audio", "aac", Fraction(1, 48000), "eng", {"a": "b"}, ["default"]),),
        container_metadata={"title": "x"},
        chapters=[{"id": 1, "start": 0, "end": 10, "time_base": [1, 1000], "metadata": {"title": "c"}}],
    )
    wire = json.loads(json.dumps(info.to_wire()))
    assert wire["video"]["time_base"] == [1, 90000]
    assert SourceInfo.from_wire(wire) == info


def test_wire_round_trip_of_real_sources(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv", subtitles=True, chapters=True, language="eng", rotation_deg=90)
    synth.write_images(tmp_path / "imgs", [(8, 8), (9, 7)])
    for url in (clip, tmp_path / "imgs"):
        info = read_items(url)[0]
        assert SourceInfo.from_wire(json.loads(json.dumps(info.to_wire()))) == info
