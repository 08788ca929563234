"""Every unusable input is a SourceError with a reason, at open or while iterating; never a
bare av error. Damage is found for truncated MP4 and Matroska and for flipped bytes."""

from __future__ import annotations

import errno
import logging

import av
import pytest

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import SourceError
from vsr_stream.media import open_source, synth

from .helpers import flip_bytes, read_items, truncate


def _fails(path, match: str) -> SourceError:
    with pytest.raises(SourceError, match=match) as info:
        read_items(path)
    return info.value


def test_missing_file(tmp_path):
    error = _fails(tmp_path / "nope.mp4", "input not found")
    assert error.errno == errno.ENOENT and "nope.mp4" in str(error)
    assert isinstance(error, OSError)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    _fails(tmp_path / "empty.mp4", "file is empty")


@pytest.mark.parametrize("name", ["noise.mp4", "noise.bin"])
def test_random_bytes(tmp_path, name):
    (tmp_path / name).write_bytes(bytes(range(256)) * 64)
    _fails(tmp_path / name, "not a readable media file")


@pytest.mark.parametrize("name, match", [("notes.txt", "not a video"), ("notes.mp4", "not a readable media file")])
def test_text_file(tmp_path, name, match):
    (tmp_path / name).write_text("hello, this is not a video\n" * 100)
    _fails(tmp_path / name, match)


def test_file_without_video_stream(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv")
    with av.open(str(clip)) as src, av.open(str(tmp_path / "audio.mka"), "w") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    _fails(tmp_path / "audio.mka", r"no video stream to upscale \(found: audio aac\)")


def test_image_folder_without_images(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.md").write_text("x")
    _fails(tmp_path / "d", "folder holds no images")


def test_truncated_mp4_fails_at_open(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mp4", frames=48, width=160, height=96)
    truncate(clip, 0.6)  # the index (moov) is written last: nothing is readable
    with pytest.raises(SourceError, match="not a readable media file"):
        open_source(str(clip), DecodeConfig())


def _faststart(src, dst):
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_faststart_mp4_fails_while_decoding(tmp_path, fraction):
    clip = synth.write_clip(tmp_path / "c.mp4", frames=48, width=160, height=96)
    _faststart(clip, tmp_path / "fs.mp4")
    truncate(tmp_path / "fs.mp4", fraction)
    _fails(tmp_path / "fs.mp4", "corrupt or truncated input at frame|truncated input: expected 48 frames")


def test_truncated_faststart_mp4_lenient_warns(tmp_path, caplog):
    clip = synth.write_clip(tmp_path / "c.mp4", frames=48, width=160, height=96, audio=False)
    _faststart(clip, tmp_path / "fs.mp4")
    truncate(tmp_path / "fs.mp4", 0.5)
    with caplog.at_level(logging.WARNING, logger="vsr_stream.media"):
        _, frames, _ = read_items(tmp_path / "fs.mp4", strict=False)
    assert 0 < len(frames) < 48 and "truncated input: expected 48 frames" in caplog.text


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_mkv_fails_at_the_end(tmp_path, fraction):
    """Matroska just stops early; the per-track DURATION tag tells us it should not have."""
    clip = synth.write_clip(tmp_path / "c.mkv", frames=48, width=160, height=96)
    truncate(clip, fraction)
    _fails(clip, r"truncated input: expected video up to 2\.000 s")


def test_truncated_mkv_lenient_warns(tmp_path, caplog):
    clip = synth.write_clip(tmp_path / "c.mkv", frames=48, width=160, height=96)
    truncate(clip, 0.6)
    with caplog.at_level(logging.WARNING, logger="vsr_stream.media"):
        _, frames, _ = read_items(clip, strict=False)
    assert len(frames) < 48 and "truncated input" in caplog.text


def _flip_video_packets(path) -> None:
    """Damage three video packets (a quarter, half and three quarters through), mid-packet."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size > 200]
    for k in (1, 2, 3):
        pos, size = packets[k * len(packets) // 4]
        flip_bytes(path, pos + size // 2)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_flipped_bytes_in_the_video_fail(tmp_path, ext):
    clip = synth.write_clip(tmp_path / f"c.{ext}", frames=48, width=160, height=96, audio=False)
    _flip_video_packets(clip)
    _fails(clip, "corrupt or truncated input at frame")


def test_flipped_bytes_lenient_conceal(tmp_path):
    clip = synth.write_clip(tmp_path / "c.mkv", frames=48, width=160, height=96, audio=False)
    _flip_video_packets(clip)
    _, frames, _ = read_items(clip, strict=False)
    assert len(frames) >= 40


@pytest.mark.parametrize("name", ["frames/*.png", "img_%04d.png", "movie [1080p].mkv"])
def test_patterns_matching_nothing(tmp_path, name):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "clip.mp4").write_bytes(b"not an image")
    error = _fails(tmp_path / name, "no image file matches|input not found")
    assert error.errno == errno.ENOENT


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_flipped_bytes_in_passthrough_audio_fail(tmp_path, ext):
    """Audio is copied, not re-encoded, but strict mode still decodes it to find damage."""
    clip = synth.write_clip(tmp_path / f"c.{ext}", frames=24)
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(audio=0) if p.size > 100]
    pos, size = packets[len(packets) // 2]
    flip_bytes(clip, pos + 8, count=min(64, size - 16))
    _fails(clip, "corrupt audio in stream")
