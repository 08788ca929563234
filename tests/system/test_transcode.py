"""Whole pipeline on generated clips: every frame, sizes, timestamps, audio copied untouched."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest

import vsr_stream
from tests.system.conftest import packets, run_cli, video_pts
from vsr_stream.media.synth import write_clip, write_images

TWO_CLASSES = {"tiling": {"tile_px": 32, "overlap_px": 4, "context_px": 8},  # several tiles per frame
               "classify": {"tvat_thresholds": [20_000.0]},  # the synthetic clip has flat and busy tiles either side
               "upscale": {"allow_random_weights": True,
                           "branches": [{"model": "bicubic"}, {"model": "fsrcnn-16", "workers": 2}]}}


def test_transcode_keeps_frames_timestamps_and_audio(av_clip, tmp_path):
    out = tmp_path / "out.mp4"
    report = vsr_stream.upscale(av_clip, out, scale=2, overrides=TWO_CLASSES)
    in_pts, in_tb, (w, h) = video_pts(av_clip)
    out_pts, out_tb, size = video_pts(out)
    assert report.frames == len(in_pts) == len(out_pts) == 12
    assert size == (2 * w, 2 * h)
    assert [p * out_tb for p in out_pts] == [p * in_tb for p in in_pts]
    assert packets(out, "audio") == packets(av_clip, "audio")
    assert sum(report.tiles_per_class) == report.stages["classify"]["tiles_per_class"][0] + \
        report.stages["classify"]["tiles_per_class"][1] > 0
    assert all(n > 0 for n in report.tiles_per_class)


def test_vfr_mkv_timestamps_survive(clip_dir, tmp_path):
    src = write_clip(clip_dir / "vfr.mkv", frames=10, vfr=True)
    out = tmp_path / "vfr_x3.mkv"
    vsr_stream.upscale(src, out, scale=3)
    (in_pts, in_tb, _), (out_pts, out_tb, _) = video_pts(src), video_pts(out)
    assert [p * out_tb for p in out_pts] == [p * in_tb for p in in_pts]
    assert len(set(np.diff(in_pts))) > 1, "the source must really be VFR"


@pytest.mark.parametrize("mode", ["ipc", "tcp"])
def test_process_modes_match_thread_mode(av_clip, tmp_path, mode):
    lossless = {"encode": {"lossless": True}, "classify": {"tvat_thresholds": [20_000.0]},
                "upscale": {"branches": [{"model": "bicubic"}, {"model": "nearest"}]}}
    ref = vsr_stream.upscale(av_clip, tmp_path / "threads.mkv", scale=2, overrides=lossless)
    got = vsr_stream.upscale(av_clip, tmp_path / f"{mode}.mkv", scale=2,
                             overrides={**lossless, "transport": {"mode": mode, "port": 0}})
    assert got.frames == ref.frames == 12
    assert got.tiles_per_class == ref.tiles_per_class
    with av.open(str(tmp_path / "threads.mkv")) as a, av.open(str(tmp_path / f"{mode}.mkv")) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0), strict=True):
            np.testing.assert_array_equal(fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24"))


def test_external_worker_joins_over_tcp(av_clip, tmp_path):
    port = 6400 + (int(time.time()) % 500) * 10
    overrides = {"transport": {"mode": "tcp", "port": port}, "classify": {"tvat_thresholds": [20_000.0]},
                 "upscale": {"allow_random_weights": True,
                             "branches": [{"model": "bicubic"}, {"model": "fsrcnn-16", "workers": 0}]}}
    result = {}
    run = threading.Thread(target=lambda: result.update(r=vsr_stream.upscale(
        av_clip, tmp_path / "ext.mkv", scale=2, overrides=overrides)))
    run.start()
    worker = run_cli("worker", "--connect", f"tcp://127.0.0.1:{port}", "--class", "1", "--timeout-ms", "60000")
    run.join(120)
    assert worker.returncode == 0, worker.stderr
    report = result["r"]
    assert report.frames == 12 and report.tiles_per_class[1] > 0
    assert any(name.startswith("upscale1.ext-") for name in report.stages)


def test_image_folder_to_png_folder_keeps_names_and_sizes(tmp_path):
    src = tmp_path / "imgs"
    paths = write_images(src, [(20, 30), (17, 9), (40, 40)])
    out = tmp_path / "up"
    report = vsr_stream.upscale(src, str(out) + "/", scale=2)
    assert report.frames == 3
    for p in paths:
        with av.open(str(out / (p.stem + ".png"))) as c, av.open(str(p)) as i:
            a, b = next(c.decode(video=0)), next(i.decode(video=0))
            assert (a.width, a.height) == (2 * b.width, 2 * b.height)


def test_cli_upscale_and_report(av_clip, tmp_path):
    out = tmp_path / "cli.mkv"
    res = run_cli("upscale", str(av_clip), str(out), "--scale", "2", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    assert '"frames": 12' in res.stdout and out.exists()


def test_cli_help_documents_commands():
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("upscale", "worker", "bench", "models", "presets", "example"):
        assert cmd in res.stdout
    up = run_cli("upscale", "--help").stdout
    for opt in ("--scale", "--config", "--codec", "--crf", "--quiet", "--overwrite", "--lossless"):
        assert opt in up


def test_video_to_png_folder_numbers_frames_and_counts_dropped_audio(av_clip, tmp_path):
    out = tmp_path / "pngs"
    report = vsr_stream.upscale(av_clip, str(out) + "/", scale=2)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(12)]
    assert report.dropped_packets == len(packets(av_clip, "audio")) > 0
    assert "NOT written" in report.summary()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_single_image_to_image_file(tmp_path, suffix):
    [src] = write_images(tmp_path / "in", [(21, 34)])
    out = tmp_path / f"photo_x3{suffix}"
    report = vsr_stream.upscale(src, out, scale=3)
    assert report.frames == 1
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (34 * 3, 21 * 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_video_into_single_image_is_refused_and_leaves_nothing(av_clip, tmp_path):
    from vsr_stream.errors import SinkError

    with pytest.raises(SinkError, match="more than one frame"):
        vsr_stream.upscale(av_clip, tmp_path / "x.png", scale=2)
    assert list(tmp_path.iterdir()) == []
