"""Temporal reuse end to end: a static camera with one moving square reuses tiles, changes nothing
where nothing moved, runs the same in every transport, and reuse off is frame-by-frame processing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import vsr_stream
from tests.kernels.conftest import emulated, gxx, harness_binary, harness_sanitized  # noqa: F401 (fixtures)
from tests.stages.conftest import InlinePipeline, psnr
from tests.system.test_fused import Transfers
from vsr_stream.config import load_config
from vsr_stream.runtime.fused import run_fused

H, W, FRAMES, SQUARE_PX = 64, 96, 8, 12
TILING = {"tile_px": 16, "overlap_px": 4, "context_px": 4}
LOSSLESS = {"encode": {"lossless": True}, "tiling": TILING,
            "upscale": {"allow_random_weights": True, "branches": [{"model": "bicubic"}]}}
REUSE_OFF = {"reuse": {"enabled": False}}


def square_at(i: int) -> tuple[int, int]:
    return 8 + 3 * i, 6 + 7 * i


def static_frames(drift: int = 0) -> list[np.ndarray]:
    """A fixed textured background (noise included, identical in every frame unless it brightens
    by ``drift`` levels a frame) and a red square moving across it."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 128 + 50 * (np.sin(xx / 4) * np.cos(yy / 6))[..., None] + rng.normal(0, 12, (H, W, 3))
    background = np.clip(base, 0, 255).astype(np.uint8)
    frames = []
    for i in range(FRAMES):
        f = background + np.uint8(drift * i)
        y, x = square_at(i)
        f[y:y + SQUARE_PX, x:x + SQUARE_PX] = (250, 30, 30)
        frames.append(f)
    return frames


def write_lossless(path: Path, frames: list[np.ndarray]) -> None:
    """``frames`` in lossless RGB H.264, so every decoded pixel is the one written."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264rgb", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        stream.codec_context.options = {"qp": "0", "preset": "ultrafast"}
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory) -> Path:
    """:func:`static_frames`, lossless, so every decoded background pixel is identical."""
    path = tmp_path_factory.mktemp("reuse") / "static.mkv"
    write_lossless(path, static_frames())
    return path


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def untouched_hr(scale: int, margin_px: int) -> np.ndarray:
    """HR mask of the LR pixels farther than ``margin_px`` from every position of the square."""
    touched = np.zeros((H, W), bool)
    for i in range(FRAMES):
        y, x = square_at(i)
        touched[max(0, y - margin_px):y + SQUARE_PX + margin_px, max(0, x - margin_px):x + SQUARE_PX + margin_px] = True
    return np.repeat(np.repeat(~touched, scale, 0), scale, 1)


def test_static_camera_reuses_tiles_and_changes_nothing_where_nothing_moved(static_clip, tmp_path):
    assert decoded(static_clip)[3].tolist() == static_frames()[3].tolist(), "the clip must be lossless"
    off = vsr_stream.upscale(static_clip, tmp_path / "off.mkv", scale=2, overrides={**LOSSLESS, **REUSE_OFF})
    on = vsr_stream.upscale(static_clip, tmp_path / "on.mkv", scale=2, overrides=LOSSLESS)
    assert on.frames == off.frames == FRAMES and off.tiles_reused == 0
    tiles = sum(off.tiles_per_class)
    assert sum(on.tiles_per_class) + on.tiles_reused == tiles
    assert on.tiles_reused > tiles // 2  # only the tiles the square crosses are upscaled again
    assert on.stages["classify"]["tiles_reused"] == on.tiles_reused and "tiles reused" in on.summary()
    a, b = decoded(tmp_path / "off.mkv"), decoded(tmp_path / "on.mkv")
    assert len(a) == len(b) == FRAMES
    mask = untouched_hr(2, TILING["context_px"] + 2)  # + bicubic's receptive radius
    assert mask.mean() > 0.3, "the comparison must cover a real part of the frame"
    for fa, fb in zip(a, b):
        assert np.abs(fa[mask].astype(int) - fb[mask]).max() <= 1
        assert psnr(fa, fb) > 50.0


def test_fused_reuses_exactly_as_the_staged_pipeline(static_clip, tmp_path):
    routed = {**LOSSLESS, "classify": {"tvat_thresholds": [20_000.0]},
              "upscale": {"allow_random_weights": True, "branches": [{"model": "nearest"},
                                                                     {"model": "bicubic", "max_batch": 3}]}}
    ref = vsr_stream.upscale(static_clip, tmp_path / "threads.mkv", scale=3, overrides=routed)
    got = vsr_stream.upscale(static_clip, tmp_path / "fused.mkv", scale=3,
                             overrides={**routed, "transport": {"mode": "fused"}})
    assert got.tiles_reused == ref.tiles_reused > 0
    assert got.tiles_per_class == ref.tiles_per_class and all(n > 0 for n in got.tiles_per_class)
    for fa, fb in zip(decoded(tmp_path / "threads.mkv"), decoded(tmp_path / "fused.mkv"), strict=True):
        np.testing.assert_array_equal(fa, fb)


def test_device_path_reuses_the_same_tiles(emulated, monkeypatch, static_clip, tmp_path):  # noqa: F811
    """Fused mode with the emulated CuPy (the tvat.cu and blend.cu kernels in the g++ harness): the
    references and the previous frame stay on the device (still one upload and one download per
    frame) and the NumPy path's tiles are reused."""
    transfers = Transfers(emulated, monkeypatch)
    cfg = load_config({**LOSSLESS, "scale": 2, "transport": {"mode": "fused"}})
    device = run_fused(cfg, str(static_clip), str(tmp_path / "device.mkv"), xp=emulated)
    assert {"tile_absdiff_u8", "accumulate_u8"} <= set(emulated.harness.launches)
    assert transfers.uploads == [(H, W, 3)] * FRAMES and transfers.downloads == [(2 * H, 2 * W, 3)] * FRAMES
    host = run_fused(cfg, str(static_clip), str(tmp_path / "host.mkv"))
    assert device["classify"]["tiles_reused"] == host["classify"]["tiles_reused"] > 0
    for a, b in zip(decoded(tmp_path / "device.mkv"), decoded(tmp_path / "host.mkv"), strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1  # float atomics: equal up to float32 rounding


def test_reuse_off_is_frame_by_frame_processing(static_clip, tmp_path):
    """With reuse off each output frame depends on its own input frame only: the same as a fresh
    pipeline per frame (where nothing can be reused)."""
    off = vsr_stream.upscale(static_clip, tmp_path / "off.mkv", scale=2, overrides={**LOSSLESS, **REUSE_OFF})
    cfg = load_config({**LOSSLESS, "scale": 2})
    outs = decoded(tmp_path / "off.mkv")
    assert off.frames == len(outs) == FRAMES
    for lr, out in zip(decoded(static_clip), outs, strict=True):
        [alone] = InlinePipeline(cfg).run([lr])
        np.testing.assert_array_equal(out, alone.arrays[0])


def test_corrected_reuse_follows_a_slow_change_as_the_bicubic_branch_would(tmp_path):
    """The background brightens by one level a frame, under a loose threshold: every background
    tile is reused. With the correction a bicubic branch's output stays what upscaling every frame
    gives (bicubic is linear), up to rounding; without it the reused tiles keep the first frame's."""
    path = tmp_path / "drift.mkv"
    write_lossless(path, static_frames(drift=1))
    loose = {**LOSSLESS, "reuse": {"mad_threshold": 10.0, "max_age_frames": 100}}
    off = vsr_stream.upscale(path, tmp_path / "off.mkv", scale=2, overrides={**LOSSLESS, **REUSE_OFF})
    on = vsr_stream.upscale(path, tmp_path / "on.mkv", scale=2, overrides=loose)
    plain = vsr_stream.upscale(path, tmp_path / "plain.mkv", scale=2,
                               overrides={**loose, "reuse": {**loose["reuse"], "correct": False}})
    assert on.tiles_reused == plain.tiles_reused > sum(off.tiles_per_class) // 2
    mask = untouched_hr(2, TILING["context_px"] + 2)
    want, got, stale = (decoded(tmp_path / f"{name}.mkv") for name in ("off", "on", "plain"))
    for i, (w, g, s) in enumerate(zip(want, got, stale, strict=True)):
        assert np.abs(w[mask].astype(int) - g[mask]).max() <= 2, f"frame {i}"
        if i >= 3:
            assert np.abs(w[mask].astype(int) - s[mask]).max() >= i - 1, f"frame {i}: the test must see the drift"
