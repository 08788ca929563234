"""What real videos carry survives the whole pipeline (the source description crosses the wire)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

import vsr_stream
from tests.system.conftest import packets, run_cli
from vsr_stream.errors import SinkError
from vsr_stream.media.synth import write_clip, write_images

BT709 = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}


def test_tags_rotation_language_chapters_subtitles(clip_dir, tmp_path):
    src = write_clip(clip_dir / "rich.mkv", frames=8, color=BT709, rotation_deg=90, language="fra",
                     chapters=True, subtitles=True)
    out = tmp_path / "rich_x2.mkv"
    vsr_stream.upscale(src, out, scale=2)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        for tag in ("colorspace", "color_range", "color_primaries", "color_trc"):
            assert getattr(vb.codec_context, tag) == getattr(va.codec_context, tag) == BT709[tag], tag
        fa, fb = next(a.decode(video=0)), next(b.decode(video=0))
        assert fb.rotation == fa.rotation != 0
        assert vb.language == va.language == "fra"
        assert b.streams.audio[0].language == "fra"
        assert len(b.chapters()) == len(a.chapters()) == 2
        assert len(b.streams.subtitles) == 1
    assert packets(out, "subtitles") == packets(src, "subtitles")
    assert packets(out, "audio") == packets(src, "audio")


def test_ten_bit_in_ten_bit_out(clip_dir, tmp_path):
    src = write_clip(clip_dir / "hdr.mkv", frames=6, bit_depth=10)
    out = tmp_path / "hdr_x2.mkv"
    vsr_stream.upscale(src, out, scale=2)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_odd_size_gets_even_dimensions(clip_dir, tmp_path):
    frames = tmp_path / "odd"
    write_images(frames, [(21, 33)] * 3)
    out = tmp_path / "odd_x3.mp4"
    vsr_stream.upscale(str(frames), out, scale=3)
    with av.open(str(out)) as c:
        s = c.streams.video[0].codec_context
        assert (s.width, s.height) == (100, 64)  # 99x63 padded to even for yuv420p


def test_size_change_fitted_to_first_frame_with_warning(tmp_path, caplog):
    frames = tmp_path / "mixed"
    write_images(frames, [(20, 30), (20, 30), (26, 18), (20, 30)])
    out = tmp_path / "mixed_x2.mp4"
    report = vsr_stream.upscale(str(frames), out, scale=2)
    assert report.frames == 4
    with av.open(str(out)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(60, 40)}
    assert report.resized_frames == 1
    assert "resized" in caplog.text


def test_subtitles_mp4_cannot_hold_are_refused_clearly(clip_dir, tmp_path):
    src = write_clip(clip_dir / "subs.mkv", frames=6, subtitles=True)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    res = run_cli("upscale", str(src), str(out_dir / "x.mp4"), "--scale", "2", "--quiet")
    assert res.returncode == 1
    assert "srt" in res.stderr and "mkv" in res.stderr
    assert list(out_dir.iterdir()) == []
    with pytest.raises(SinkError):
        vsr_stream.upscale(src, out_dir / "y.mp4", scale=2)


def test_password_never_in_messages(tmp_path):
    res = run_cli("upscale", "rtsp://admin:s3cret@127.0.0.1:1/stream", str(tmp_path / "o.mkv"), "--quiet",
                  timeout=60)
    assert res.returncode != 0
    assert "s3cret" not in res.stderr and "s3cret" not in res.stdout
