"""PNG folder output: input image names (or frame_000000.png), own sizes, 16-bit kept,
published atomically, passthrough packets counted and reported."""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from vsr_stream.config import EncodeConfig
from vsr_stream.media import open_sink, synth

from .helpers import read_items, transcode


def test_image_input_names_and_sizes(tmp_path):
    synth.write_images(tmp_path / "in", [(10, 12), (7, 5), (9, 9)])
    transcode(tmp_path / "in", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["img_000.png", "img_001.png", "img_002.png"]
    info, frames, _ = read_items(tmp_path / "out")
    assert [f.array.shape[:2] for f in frames] == [(10, 12), (7, 5), (9, 9)]
    assert np.array_equal(frames[1].array, synth.picture(1, 7, 5))
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_non_png_inputs_get_png_names(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(synth.picture(0, 8, 8)).save(tmp_path / "in" / "shot.jpg")
    transcode(tmp_path / "in", tmp_path / "out/")
    assert os.listdir(tmp_path / "out") == ["shot.png"]


def test_video_input_numbers_frames_and_counts_packets(tmp_path, caplog):
    clip = synth.write_clip(tmp_path / "in.mkv", frames=5)
    with caplog.at_level(logging.WARNING, logger="vsr_stream.media"):
        _, frames, packets = transcode(clip, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == [f"frame_{i:06d}.png" for i in range(5)]
    assert np.array_equal(read_items(tmp_path / "out" / "frame_000003.png")[1][0].array, frames[3].array)
    assert f"{len(packets)} passthrough packet(s) were not written" in caplog.text


def test_16bit_frames_make_16bit_pngs(tmp_path):
    clip = synth.write_clip(tmp_path / "in.mkv", bit_depth=10, frames=2, audio=False)
    _, frames, _ = transcode(clip, tmp_path / "out")
    info, out, _ = read_items(tmp_path / "out")
    assert info.video.bit_depth == 16 and all(np.array_equal(a.array, b.array) for a, b in zip(frames, out))


def test_existing_empty_folder_is_used_and_overwrite_replaces(tmp_path):
    synth.write_images(tmp_path / "in", [(8, 8)])
    (tmp_path / "out").mkdir()
    transcode(tmp_path / "in", tmp_path / "out")
    (tmp_path / "out" / "stale.txt").write_text("x")
    transcode(tmp_path / "in", tmp_path / "out", overwrite=True)
    assert os.listdir(tmp_path / "out") == ["img_000.png"]
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_nothing_is_visible_before_close(tmp_path):
    info = read_items(synth.write_images(tmp_path / "in", [(8, 8)])[0])[0]
    sink = open_sink(str(tmp_path / "out"), EncodeConfig(), info, 1)
    sink.write_frame(read_items(tmp_path / "in")[1][0])
    assert not (tmp_path / "out").exists()
    sink.close()
    assert os.listdir(tmp_path / "out") == ["img_000.png"] and sink.frames_written == 1
