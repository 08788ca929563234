"""Quality measurement by the SR literature's protocol: MATLAB bicubic resize, Y-PSNR and
Y-SSIM, and evaluation of the pipeline on image sets and video frames (docs/quality.md)."""

from __future__ import annotations

from vsr_stream.quality.evaluate import (
    EvalResult,
    ImageScore,
    bicubic_upscaler,
    evaluate_pairs,
    evaluate_video,
    load_sr_val,
    make_pairs_from_hr,
    pipeline_upscale_all,
    pipeline_upscaler,
    run_eval,
)
from vsr_stream.quality.imresize import imresize
from vsr_stream.quality.metrics import modcrop, psnr_y, rgb_to_y, ssim_y

__all__ = [
    "EvalResult", "ImageScore", "bicubic_upscaler", "evaluate_pairs", "evaluate_video", "imresize", "load_sr_val",
    "make_pairs_from_hr", "modcrop", "pipeline_upscale_all", "pipeline_upscaler", "psnr_y", "rgb_to_y", "run_eval",
    "ssim_y",
]
