"""Sink failures: every one is a SinkError saying what was expected, nothing is left behind
after abort(), and a full disk (EFBIG via RLIMIT_FSIZE; ENOSPC on a tiny tmpfs) is caught."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError
from vsr_stream.media import PacketItem, SourceInfo, VideoFrameItem, VideoInfo, check_output, open_sink, synth

from .helpers import read_items

REPO = Path(__file__).resolve().parents[2]


def _info(width=96, height=64, bit_depth=8) -> SourceInfo:
    video = VideoInfo(width, height, Fraction(1, 24), Fraction(24), "yuv420p", bit_depth)
    return SourceInfo(url="generated", kind="video", video=video)


def _frame(i, h=64, w=96):
    return VideoFrameItem(i, i, Fraction(1, 24), 1, synth.picture(i, h, w))


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out.mkv"
    out.write_bytes(b"old")
    with pytest.raises(SinkError, match="output exists") as info:
        check_output(str(out), overwrite=False)
    assert info.value.errno == errno.EEXIST
    with pytest.raises(SinkError, match="output exists"):
        open_sink(str(out), EncodeConfig(), _info(), 1)
    sink = open_sink(str(out), EncodeConfig(overwrite=True), _info(), 1)
    sink.write_frame(_frame(0))
    sink.close()
    assert out.read_bytes() != b"old" and read_items(out)[1][0].array.shape == (64, 96, 3)


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing/out.mkv", "does not exist"),
        ("out.nosuchformat", "no video container for extension '.nosuchformat'"),
        ("out.ppm", "image type '.ppm' is not supported"),
    ],
)
def test_bad_output_paths(tmp_path, name, match):
    with pytest.raises(SinkError, match=match):
        check_output(str(tmp_path / name), overwrite=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(SinkError, match="not writable"):
        check_output(str(tmp_path / "ro" / "out.mkv"), overwrite=False)


def test_png_folder_rules(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"x")
    with pytest.raises(SinkError, match="not empty"):
        check_output(str(tmp_path / "full"), overwrite=False)
    check_output(str(tmp_path / "full"), overwrite=True)
    (tmp_path / "empty").mkdir()
    check_output(str(tmp_path / "empty"), overwrite=False)
    check_output(str(tmp_path / "new") + "/", overwrite=False)
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(SinkError, match="not a folder"):
        check_output(str(tmp_path / "afile"), overwrite=True)


def test_subrip_into_mp4_is_refused_at_open(tmp_path):
    clip = synth.write_clip(tmp_path / "in.mkv", subtitles=True)
    info = read_items(clip)[0]
    with pytest.raises(SinkError, match=r"passthrough stream 2 \(subtitle, codec srt\) cannot go into a mp4 file.*\.mkv"):
        open_sink(str(tmp_path / "out.mp4"), EncodeConfig(), info, 1)
    assert os.listdir(tmp_path) == ["in.mkv"]


def test_aac_into_webm_is_refused_at_open(tmp_path):
    info = read_items(synth.write_clip(tmp_path / "in.mkv"))[0]
    with pytest.raises(SinkError, match=r"passthrough stream 1 \(audio, codec aac\) cannot go into a webm file"):
        open_sink(str(tmp_path / "out.webm"), EncodeConfig(), info, 1)


@pytest.mark.parametrize(
    "encode, match",
    [
        ({"lossless": True}, "lossless 16-bit output with libx264rgb in mp4 is not possible"),
        ({"codec": "nosuchcodec"}, "unknown video encoder 'nosuchcodec'"),
        ({"pix_fmt": "rgb565le"}, "cannot take pix_fmt 'rgb565le'"),
    ],
)
def test_impossible_encodes(tmp_path, encode, match):
    with pytest.raises(SinkError, match=match):
        open_sink(str(tmp_path / "out.mp4"), EncodeConfig(**encode), _info(bit_depth=16), 1)
    assert os.listdir(tmp_path) == []


def test_abort_leaves_nothing_and_is_idempotent(tmp_path):
    for name in ("out.mp4", "out.mkv", "pngs/"):
        sink = open_sink(str(tmp_path / name), EncodeConfig(), _info(), 1)
        for i in range(3):
            sink.write_frame(_frame(i))
        sink.abort()
        sink.abort()
        with pytest.raises(SinkError, match="already aborted"):
            sink.write_frame(_frame(3))
    assert os.listdir(tmp_path) == []


def test_abort_after_close_keeps_the_output(tmp_path):
    sink = open_sink(str(tmp_path / "out.mkv"), EncodeConfig(), _info(), 1)
    sink.write_frame(_frame(0))
    sink.close()
    sink.abort()
    assert os.listdir(tmp_path) == ["out.mkv"] and sink.frames_written == 1


def test_closing_without_frames_fails(tmp_path):
    sink = open_sink(str(tmp_path / "out.mkv"), EncodeConfig(), _info(), 1)
    with pytest.raises(SinkError, match="no video frame was written"):
        sink.close()
    sink.abort()
    assert os.listdir(tmp_path) == []


_FILL_THE_DISK = """
import json, resource, signal, sys
from fractions import Fraction
import numpy as np
from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError
from vsr_stream.media import SourceInfo, VideoFrameItem, VideoInfo, open_sink

out, limit = sys.argv[1], int(sys.argv[2])
video = VideoInfo(256, 256, Fraction(1, 24), Fraction(24), "yuv420p", 8)
sink = open_sink(out, EncodeConfig(lossless=True), SourceInfo("generated", "video", video), 1)
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
rng = np.random.default_rng(0)
try:
    for i in range(60):
        sink.write_frame(VideoFrameItem(i, i, Fraction(1, 24), 1, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)))
    sink.close()
    print(json.dumps({"outcome": "closed"}))
except SinkError as e:
    sink.abort()
    print(json.dumps({"outcome": "SinkError", "errno": e.errno, "message": str(e)}))
"""


def _fill(out: Path, limit: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _FILL_THE_DISK, str(out), str(limit)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_file_size_limit_gives_sink_error_and_no_file(tmp_path):
    result = _fill(tmp_path / "out.mkv", 1_000_000)
    assert result["outcome"] == "SinkError" and result["errno"] == errno.EFBIG, result
    assert "out.mkv" in result["message"]
    assert os.listdir(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_gives_sink_error_and_no_file(tiny_tmpfs):
    result = _fill(tiny_tmpfs / "out.mkv", 0)
    assert result["outcome"] == "SinkError" and result["errno"] == errno.ENOSPC, result
    assert os.listdir(tiny_tmpfs) == []


def test_writing_a_passthrough_packet_of_an_unknown_stream(tmp_path):
    sink = open_sink(str(tmp_path / "out.mkv"), EncodeConfig(), _info(), 1)
    with pytest.raises(SinkError, match="not a passthrough stream"):
        sink.write_packet(PacketItem(5, 0, 0, 1, Fraction(1, 1000), True, b"x"))
    sink.abort()


def test_nvenc_takes_crf_as_constant_quality():
    from vsr_stream.media.codecs import hardware_requirement, plan_encoder

    plan = plan_encoder("mp4", EncodeConfig(codec="h264_nvenc", crf=21, preset="p5"), 8)
    assert plan.codec == "h264_nvenc" and plan.pix_fmt == "yuv420p"
    assert plan.options == {"cq": "21", "rc": "vbr", "b": "0", "preset": "p5"}
    assert "NVIDIA" in hardware_requirement("hevc_nvenc") and hardware_requirement("libx264") is None


def test_nvenc_without_a_gpu_says_what_it_needs_and_leaves_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: NVENC may well start")
    out = tmp_path / "out.mp4"
    sink = open_sink(str(out), EncodeConfig(codec="h264_nvenc"), _info(), 1)
    with pytest.raises(SinkError, match=r"h264_nvenc needs an NVIDIA GPU"):
        sink.write_frame(_frame(0))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_encoder_threads_reach_the_codec_context(tmp_path):
    from vsr_stream.media.codecs import plan_encoder

    assert plan_encoder("mp4", EncodeConfig(), 8).threads == 0  # the encoder's own choice
    assert plan_encoder("mkv", EncodeConfig(threads=1, lossless=True), 8).threads == 1
    sink = open_sink(str(tmp_path / "out.mp4"), EncodeConfig(threads=1), _info(), 1)
    for i in range(3):
        sink.write_frame(_frame(i))
    assert sink._video.codec_context.thread_count == 1
    sink.close()
    _, frames, _ = read_items(tmp_path / "out.mp4")
    assert len(frames) == 3
