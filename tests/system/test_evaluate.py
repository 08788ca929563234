"""Evaluation end to end: the full pipeline on generated images against MATLAB bicubic, sr-val
style folders, video frames, and (when ../shared is there) the published bicubic baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.system.conftest import REPO
from vsr_stream.errors import ConfigError, ModelInputError, SourceError
from vsr_stream.media.synth import write_clip
from vsr_stream.quality.evaluate import (
    bicubic_upscaler,
    evaluate_pairs,
    evaluate_video,
    load_sr_val,
    make_pairs_from_hr,
    pipeline_upscale_all,
    pipeline_upscaler,
    run_eval,
    score_outputs,
)
from vsr_stream.quality.imresize import imresize
from vsr_stream.quality.metrics import psnr_y

SR_VAL = REPO.parent / "shared" / "data" / "sr-val"  # development data; CI never has it
# Named explicitly so the test keeps meaning "bicubic" when the default config ships trained weights.
BICUBIC = {"classify": {"tvat_thresholds": []}, "upscale": {"branches": [{"model": "bicubic", "workers": 1}]}}
PUBLISHED = {  # (set, scale): (PSNR dB, SSIM) of MATLAB bicubic, as in the SR papers
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}
needs_sr_val = pytest.mark.skipif(not SR_VAL.is_dir(), reason=f"development data {SR_VAL} is absent")


def natural_image(h: int, w: int, seed: int, grey: bool = False) -> np.ndarray:
    """Smooth shading, edges and some fine texture, like a photo: uint8 (h, w, 3) or (h, w)."""
    rng = np.random.default_rng(seed)
    coarse = imresize(rng.uniform(0, 255, size=(h // 8 + 1, w // 8 + 1, 3)), output_shape=(h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    edges = 50.0 * (((xx + 2 * yy) // 29) % 2)[:, :, None]
    img = np.clip(0.7 * coarse + edges + rng.normal(0, 4, size=(h, w, 3)), 0, 255).astype(np.uint8)
    return img[:, :, 1].copy() if grey else img


def hr_folder(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(natural_image(h, w, seed=i, grey=(i == 1))).save(folder / f"img{i}.png")
    return folder


@pytest.mark.parametrize("scale", [2, 4])
def test_pipeline_bicubic_is_close_to_matlab_bicubic(tmp_path, scale):
    pairs = make_pairs_from_hr(hr_folder(tmp_path / "hr", [(96, 80), (64, 100), (72, 72)]), scale)
    srs = pipeline_upscale_all({name: lr for name, lr, _ in pairs}, BICUBIC, scale)
    assert srs["img1.png"].ndim == 2  # grey in, grey out
    pipeline = score_outputs([(n, srs[n], hr) for n, _, hr in pairs], scale, scale=scale, method="pipeline")
    matlab = evaluate_pairs(pairs, bicubic_upscaler(scale), scale, method="bicubic")
    assert abs(pipeline.mean_psnr_db - matlab.mean_psnr_db) < 0.5
    assert 20 < matlab.mean_psnr_db < 45  # a real measurement, not identical or garbage images


def test_pipeline_upscaler_one_image(tmp_path):
    lr = natural_image(30, 40, seed=7)
    sr = pipeline_upscaler(BICUBIC, 3)(lr)
    assert sr.shape == (90, 120, 3) and sr.dtype == np.uint8
    assert psnr_y(sr, bicubic_upscaler(3)(lr), 3) > 35


def test_make_pairs_from_hr_modcrops_and_uses_matlab_bicubic(tmp_path):
    pairs = make_pairs_from_hr(hr_folder(tmp_path / "hr", [(50, 37)]), 4)
    (name, lr, hr), = pairs
    assert name == "img0.png" and hr.shape == (48, 36, 3) and lr.shape == (12, 9, 3)
    np.testing.assert_array_equal(lr, imresize(hr, 0.25))


def test_run_eval_on_an_sr_val_layout(tmp_path):
    for name, lr, hr in make_pairs_from_hr(hr_folder(tmp_path / "hr", [(40, 44), (36, 30)]), 2):
        for kind, img in (("LR", lr), ("HR", hr)):
            (tmp_path / "Mine" / "x2" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "Mine" / "x2" / kind / name)
    assert [n for n, _, _ in load_sr_val(tmp_path, "Mine", 2)] == ["img0.png", "img1.png"]
    result = run_eval(["Mine"], 2, tmp_path, "bicubic")["Mine"]
    assert [s.name for s in result.images] == ["img0.png", "img1.png"]
    assert result.mean_psnr_db == pytest.approx(np.mean([s.psnr_db for s in result.images]))
    table = result.table()
    assert "img1.png" in table and "mean" in table and f"{result.mean_psnr_db:.2f}" in table
    d = result.to_dict()
    assert d["set"] == "Mine" and d["scale"] == 2 and d["shave_px"] == 2 and len(d["images"]) == 2
    with pytest.raises(ConfigError):
        run_eval(["Mine"], 2, tmp_path, "lanczos")
    with pytest.raises(SourceError):
        load_sr_val(tmp_path, "Mine", 3)


def test_evaluate_video_frames(tmp_path):
    a = write_clip(tmp_path / "a.mkv", frames=4, audio=False)
    b = write_clip(tmp_path / "b.mkv", frames=4, audio=False, seed=1)
    same = evaluate_video(a, a, 0)
    assert [s.name for s in same.images] == [f"frame_{i:06d}" for i in range(4)]
    assert all(s.psnr_db == np.inf and s.ssim == pytest.approx(1.0) for s in same.images)
    assert np.isfinite(evaluate_video(a, b, 2).mean_psnr_db)


def test_evaluate_video_rejects_different_frame_counts(tmp_path):
    a = write_clip(tmp_path / "a.mkv", frames=4, audio=False)
    short = write_clip(tmp_path / "short.mkv", frames=3, audio=False)
    with pytest.raises(ModelInputError, match="frame counts differ"):
        evaluate_video(a, short, 0)
    with pytest.raises(ValueError):
        evaluate_video(short, a, 0)


@needs_sr_val
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_reproduces_matlab_lr_images(scale):
    for set_name in ("Set5", "Set14"):
        for name, lr, hr in load_sr_val(SR_VAL, set_name, scale):
            np.testing.assert_array_equal(imresize(hr, 1 / scale), lr, err_msg=f"{set_name} x{scale} {name}")


@needs_sr_val
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_published_bicubic_baselines(scale):
    results = run_eval(["Set5", "Set14"], scale, SR_VAL, "bicubic")
    for set_name, result in results.items():
        psnr_db, ssim = PUBLISHED[(set_name, scale)]
        assert result.mean_psnr_db == pytest.approx(psnr_db, abs=0.02), result.table()
        assert result.mean_ssim == pytest.approx(ssim, abs=0.002), result.table()


def test_an_upscaler_of_the_wrong_size_is_named():
    pairs = [("tiny.png", natural_image(10, 12, seed=0), natural_image(20, 24, seed=1))]
    with pytest.raises(ModelInputError, match="tiny.png"):
        evaluate_pairs(pairs, bicubic_upscaler(3), 2)
