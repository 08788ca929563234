"""Pipeline cost accounting: MACs over tile windows per class, as the classify stage routes."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.config import load_config
from vsr_stream.quality.cost import frame_classes, pipeline_cost
from vsr_stream.stages.classify import branch_context_px, tile_plan, with_context


def _cfg(**tiling):
    return load_config({"scale": 2, "tiling": {"tile_px": 16, "overlap_px": 0, "context_px": 0, **tiling},
                        "classify": {"tvat_thresholds": [50_000.0]},
                        "upscale": {"branches": [{"model": "bicubic"}, {"model": "nearest"}]}})


def _half_textured(h=32, w=32):
    frame = np.full((h, w, 3), 128, np.uint8)
    frame[:, w // 2:] = np.random.default_rng(0).integers(0, 256, (h, w - w // 2, 3), dtype=np.uint8)
    return frame


def test_flat_tiles_go_to_class_0_and_textured_to_class_1():
    geom, classes = frame_classes(_half_textured(), _cfg())
    assert len(geom) == 4
    # VSP is frame-wide: the flat tiles' last column sees the noise next to it (TVAT about
    # 3,000), far below the noise tiles' (about 260,000) and the threshold between them.
    assert list(classes) == [0, 1, 0, 1]


def test_macs_are_rate_times_window_area_per_class():
    frame = _half_textured()
    cost = pipeline_cost([frame], _cfg(), rates=(10.0, 100.0))
    _, classes = frame_classes(frame, _cfg())
    n1 = int((classes == 1).sum())
    assert cost.tiles_per_class == (4 - n1, n1)
    assert cost.macs == pytest.approx(256 * (10.0 * (4 - n1) + 100.0 * n1))
    assert cost.hr_pixels == 32 * 32 * 4
    assert sum(cost.class_shares) == pytest.approx(1.0)


def test_context_adds_the_overlap_work_up_to_the_branch_radius():
    frame = np.full((64, 64, 3), 7, np.uint8)  # flat: every tile to class 0, bicubic (radius 2)
    bare = pipeline_cost([frame], _cfg(), rates=(1.0, 1.0))
    padded = pipeline_cost([frame], _cfg(context_px=1), rates=(1.0, 1.0))
    more = pipeline_cost([frame], _cfg(context_px=4), rates=(1.0, 1.0))
    assert bare.macs == 64 * 64
    assert padded.macs == pytest.approx(16 * 18 * 18)  # 16 tiles, each window 16 + 2*1 px
    assert more.macs == pytest.approx(16 * 20 * 20)  # bicubic needs 2 px of context, not 4


def test_each_branch_cuts_its_own_context():
    cfg = _cfg(context_px=8)
    assert branch_context_px(cfg) == (2, 0)  # bicubic, nearest
    geom = tile_plan(64, 64, cfg.tiling)
    rows = with_context(geom[[0, 5]], 64, 64, cfg.tiling, 2)
    np.testing.assert_array_equal(rows[:, :5], geom[[0, 5], :5])  # the same cores
    assert rows[:, 7:].tolist() == [[20, 20], [20, 20]]  # windows of 16 + 2*2
    assert rows[:, 5:7].tolist() == [[0, 0], [14, 14]]  # the corner tile's window shifted into the frame
    assert with_context(geom, 64, 64, cfg.tiling, 8) is geom


def test_merged_windows_pay_their_context_once():
    frame = np.full((64, 64, 3), 7, np.uint8)
    cfg = load_config({"scale": 2, "tiling": {"tile_px": 16, "overlap_px": 0, "context_px": 2},
                       "upscale": {"branches": [{"model": "bicubic", "merge_px": 64}]}})
    assert pipeline_cost([frame], cfg, rates=(1.0,)).macs == 64 * 64  # one window: the frame
    cfg = load_config({**cfg.model_dump(), "upscale": {"branches": [{"model": "bicubic", "merge_px": 40}]}})
    assert pipeline_cost([frame], cfg, rates=(1.0,)).macs == pytest.approx(4 * 34 * 34)  # 2x2 tiles per window


def test_grey_frames_count_like_rgb_and_measured_rates_are_positive():
    cfg = _cfg()
    grey = np.full((32, 32), 50, np.uint8)
    cost = pipeline_cost([grey], cfg)
    assert cost.tiles_per_class == (4, 0)
    assert cost.branch_macs_per_lr_px == (pytest.approx(cost.macs / (32 * 32)), 0.0)  # nearest is free
    assert cost.macs_per_hr_px > 0


def test_self_ensemble_costs_eight_passes_and_runs_in_the_branch():
    import torch

    from vsr_stream.models.ensemble import with_self_ensemble
    from vsr_stream.models.inference import BranchModel
    from vsr_stream.quality.cost import branch_macs_per_lr_px

    def cfg(ensemble: bool):
        return load_config({"scale": 2, "upscale": {"allow_random_weights": True, "branches": [
            {"model": "fsrcnn-ps-16", "self_ensemble": ensemble, "freeze": False}]}})  # eager: inspected below

    [plain], [ensembled] = branch_macs_per_lr_px(cfg(False)), branch_macs_per_lr_px(cfg(True))
    assert ensembled == pytest.approx(8 * plain)
    torch.manual_seed(0)
    branch = BranchModel(cfg(True).upscale.branches[0], 2, allow_random=True)
    windows = np.random.default_rng(1).integers(0, 256, (2, 9, 13, 3), dtype=np.uint8)
    x = torch.from_numpy(windows).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = with_self_ensemble(branch.module.module)(x).clamp(0, 1).mul(255).round()
    assert np.array_equal(branch.upscale(windows), expected.permute(0, 2, 3, 1).byte().numpy())
