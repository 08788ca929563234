"""Tiling, routing and stitching run inline: seamlessness, ordering, exactly-once release."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stages.conftest import psnr
from vsr_stream import messages as m
from vsr_stream.errors import ProtocolError
from vsr_stream.models.inference import BranchModel


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    img = base[..., None] + rng.normal(0, 20, (h, w, 3))
    img[: h // 3] = 90  # a flat band, so TVAT routing has something to separate
    return np.clip(img, 0, 255).astype(np.uint8)


def whole_frame(cfg, frame: np.ndarray) -> np.ndarray:
    return BranchModel(cfg.upscale.branches[0], cfg.scale, False).upscale(frame[None])[0]


@pytest.mark.parametrize("h,w", [(37, 53), (20, 20), (1, 1), (64, 97), (5, 130)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_nearest_is_bit_exact(make_cfg, inline, h, w, scale):
    cfg = make_cfg(scale=scale, upscale={"branches": [{"model": "nearest"}]})
    frame = textured(h, w)
    [out] = inline(cfg).run([frame])
    assert out.arrays[0].shape == (h * scale, w * scale, 3)
    np.testing.assert_array_equal(out.arrays[0], np.repeat(np.repeat(frame, scale, 0), scale, 1))


@pytest.mark.parametrize("tiling", [
    {"tile_px": 32, "overlap_px": 4, "context_px": 8},   # ClassSR tiles, stride 28, 8 px context
    {"tile_px": 64, "overlap_px": 8, "context_px": 8},
])
@pytest.mark.parametrize("scale", [2, 4])
def test_fsrcnn_tiled_matches_whole_frame(make_cfg, inline, random_weights, tiling, scale):
    branch = {"model": "fsrcnn-56", "weights": random_weights("fsrcnn-56", scale)}
    cfg = make_cfg(scale=scale, tiling=tiling, upscale={"branches": [branch]})
    frame = textured(70, 91)
    [out] = inline(cfg).run([frame])
    ref = whole_frame(cfg, frame)
    assert ref.std() > 20, "the reference must not be a flat image, or the comparison proves nothing"
    assert psnr(out.arrays[0], ref) >= 40.0


def test_branch_cuts_only_the_context_its_network_needs(make_cfg, inline, random_weights):
    """tiling.context_px above the branch's receptive radius (7 for FSRCNN-PS): the windows carry 7 px,
    so the work is that of context_px = 7, and the output is still the whole frame's."""
    branch = {"model": "fsrcnn-ps-16", "weights": random_weights("fsrcnn-ps-16", 2)}
    frame = textured(70, 91)
    runs = []
    for context_px in (7, 12):
        cfg = make_cfg(scale=2, tiling={"tile_px": 32, "overlap_px": 4, "context_px": context_px},
                       upscale={"branches": [branch]})
        pipe = inline(cfg)
        [out] = pipe.run([frame])
        runs.append((out.arrays[0], pipe.workers[0].window_px))
    (tight, tight_px), (wide, wide_px) = runs
    assert wide_px == tight_px == 12 * (26 + 14) ** 2  # 3 x 4 tiles, cores 26 x 26 (balanced)
    np.testing.assert_array_equal(wide, tight)
    assert psnr(wide, whole_frame(cfg, frame)) >= 40.0


def test_without_context_seams_show(make_cfg, inline, random_weights):
    """The check above can fail: with no context the tiles differ from the whole frame."""
    branch = {"model": "fsrcnn-56", "weights": random_weights("fsrcnn-56", 4)}
    cfg = make_cfg(scale=4, tiling={"tile_px": 16, "overlap_px": 2, "context_px": 0}, upscale={"branches": [branch]})
    frame = textured(70, 91)
    [out] = inline(cfg).run([frame])
    assert psnr(out.arrays[0], whole_frame(cfg, frame)) < 40.0


def test_bicubic_tiled_matches_whole_frame(make_cfg, inline):
    cfg = make_cfg(scale=3)
    frame = textured(45, 61)
    [out] = inline(cfg).run([frame])
    assert psnr(out.arrays[0], whole_frame(cfg, frame)) >= 50.0


def test_frames_released_in_order_once_with_size_changes(make_cfg, inline):
    cfg = make_cfg(scale=2, classify={"tvat_thresholds": [1000.0]},
                   upscale={"branches": [{"model": "nearest", "max_batch": 3}, {"model": "nearest"}]})
    frames = [textured(30, 40, 1), textured(33, 21, 2), textured(8, 8, 3), textured(30, 40, 4)]
    outs = inline(cfg).run(frames, reverse_results=True)
    assert [o["index"] for o in outs] == [0, 1, 2, 3]
    for o, f in zip(outs, frames):
        assert o.arrays[0].shape == (f.shape[0] * 2, f.shape[1] * 2, 3)
        assert o["pts"] == o["index"] * 1001


def test_routing_uses_both_classes(make_cfg, inline):
    cfg = make_cfg(scale=2, classify={"tvat_thresholds": [1.0]},
                   upscale={"branches": [{"model": "nearest"}, {"model": "nearest"}]})
    pipe = inline(cfg)
    pipe.run([textured(128, 64)])
    flat, busy = pipe.classify.tiles_per_class
    assert flat > 0 and busy > 0


def test_duplicate_plan_is_rejected(make_cfg):
    from vsr_stream.stages.stitch import StitchStage

    stitch = StitchStage(make_cfg(scale=2))
    plan = m.Message(m.PLAN, {"index": 0, "pts": 0, "time_base": [1, 25], "duration": 1, "name": None,
                              "h": 4, "w": 4, "n_tiles": 1, "dtype": "uint8"})
    list(stitch.process(plan))
    with pytest.raises(ProtocolError):
        list(stitch.process(plan))


def test_uint16_frames_keep_depth(make_cfg, inline):
    cfg = make_cfg(scale=2, upscale={"branches": [{"model": "nearest"}]})
    frame = (textured(17, 23).astype(np.uint16) * 257)
    [out] = inline(cfg).run([frame])
    assert out.arrays[0].dtype == np.uint16
    np.testing.assert_array_equal(out.arrays[0], np.repeat(np.repeat(frame, 2, 0), 2, 1))


def test_cuda_branch_falls_back_to_cpu_with_a_warning(make_cfg, inline, caplog):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here: nothing falls back")
    cfg = make_cfg(scale=2, upscale={"branches": [{"model": "nearest", "device": "cuda:0"}]})
    frame = textured(9, 11)
    [out] = inline(cfg).run([frame])
    np.testing.assert_array_equal(out.arrays[0], np.repeat(np.repeat(frame, 2, 0), 2, 1))
    assert "CUDA is not usable" in caplog.text
