"""Evaluation by the standard SR protocol: upscale LR images (or take decoded video frames),
score Y-PSNR and Y-SSIM against HR with ``scale`` px shaved, report per image and mean.

Images are uint8 arrays, (H, W, 3) RGB or (H, W) grey (Set14's bridge.png): a grey image is
its own Y. The pipeline only takes RGB, so grey goes in repeated to three channels and
comes back as its first channel.

    results = run_eval(["Set5", "Set14"], 4, "../shared/data/sr-val", "bicubic")
    print(results["Set5"].table())
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from vsr_stream.errors import ConfigError, ModelInputError, SourceError
from vsr_stream.quality.cost import PipelineCost, pipeline_cost
from vsr_stream.quality.imresize import imresize
from vsr_stream.quality.metrics import modcrop, psnr_y, ssim_y

log = logging.getLogger(__name__)

Pair = tuple[str, np.ndarray, np.ndarray]  # (name, LR uint8, HR uint8)
Upscaler = Callable[[np.ndarray], np.ndarray]  # LR uint8 -> SR uint8, scale times larger
METHODS = ("bicubic", "pipeline")
_IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jpg", ".jpeg", ".webp"})


@dataclass(frozen=True)
class ImageScore:
    """One image's (or video frame's) Y-PSNR in dB and Y-SSIM."""

    name: str
    psnr_db: float
    ssim: float


@dataclass(frozen=True)
class EvalResult:
    """Scores of one set at one scale (None for video frames compared as they are); means
    are plain averages over the images."""

    set_name: str
    scale: int | None
    method: str
    shave_px: int
    images: tuple[ImageScore, ...]
    cost: PipelineCost | None = None

    @property
    def mean_psnr_db(self) -> float:
        return float(np.mean([s.psnr_db for s in self.images]))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean([s.ssim for s in self.images]))

    def table(self) -> str:
        """A plain-text table: one row per image, then the mean."""
        width = max([len(s.name) for s in self.images] + [4])
        at_scale = "" if self.scale is None else f" x{self.scale}"
        head = f"{self.set_name}{at_scale} {self.method} (Y, shave {self.shave_px} px)"
        rows = [head, f"{'name':<{width}}  {'PSNR dB':>8}  {'SSIM':>6}"]
        rows += [f"{s.name:<{width}}  {s.psnr_db:8.2f}  {s.ssim:6.4f}" for s in self.images]
        rows.append(f"{'mean':<{width}}  {self.mean_psnr_db:8.2f}  {self.mean_ssim:6.4f}")
        if self.cost is not None:
            rows.append(f"cost: {self.cost.line()}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set_name, "scale": self.scale, "method": self.method, "shave_px": self.shave_px,
                "mean_psnr_db": self.mean_psnr_db, "mean_ssim": self.mean_ssim,
                "images": [{"name": s.name, "psnr_db": s.psnr_db, "ssim": s.ssim} for s in self.images],
                "cost": None if self.cost is None else self.cost.to_dict()}


def score_outputs(outputs: Iterable[tuple[str, np.ndarray, np.ndarray]], shave: int, *, scale: int | None,
                  set_name: str = "", method: str = "") -> EvalResult:
    """Score (name, SR, HR) triples; ModelInputError if an SR and its HR differ in shape."""
    scores = []
    for name, sr, hr in outputs:
        if np.shape(sr) != np.shape(hr):
            raise ModelInputError(f"{name}: SR is {np.shape(sr)}, HR is {np.shape(hr)}")
        score = ImageScore(name, psnr_y(sr, hr, shave), ssim_y(sr, hr, shave))
        log.info("%s: %.4f dB, SSIM %.5f", name, score.psnr_db, score.ssim)
        scores.append(score)
    if not scores:
        raise ModelInputError(f"{set_name or 'evaluation'}: nothing to score")
    return EvalResult(set_name, scale, method, shave, tuple(scores))


def evaluate_pairs(pairs: Iterable[Pair], upscale_fn: Upscaler, scale: int, *, set_name: str = "",
                   method: str = "") -> EvalResult:
    """Upscale each LR with ``upscale_fn`` and score it against its HR, shaving ``scale`` px."""
    return score_outputs(((name, upscale_fn(lr), hr) for name, lr, hr in pairs), scale, scale=scale,
                         set_name=set_name, method=method)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An 8-bit image file as uint8: (H, W) for grey, else (H, W, 3) RGB (alpha dropped).
    Raises SourceError if it cannot be read."""
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode == "L" else im.convert("RGB")).copy()
    except OSError as e:
        raise SourceError(f"{path}: cannot read image: {e}") from e


def write_png(path: Path, img: np.ndarray) -> None:
    """Write a uint8 image as PNG; grey goes out as RGB by repetition (the pipeline's input)."""
    rgb = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
    Image.fromarray(np.ascontiguousarray(rgb)).save(path)


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of ``folder`` sorted by name; SourceError if it is missing or has none."""
    root = Path(folder)
    if not root.is_dir():
        raise SourceError(errno.ENOENT, f"{root}: no such folder")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(errno.ENOENT, f"{root}: holds no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    return paths


def load_sr_val(root: str | os.PathLike[str], set_name: str, scale: int) -> list[Pair]:
    """(name, LR, HR) from ``<root>/<set_name>/x<scale>/{LR,HR}``, sorted by name.
    Raises SourceError if a folder is missing or the two folders hold different names."""
    base = Path(root) / set_name / f"x{scale}"
    lr_paths, hr_paths = list_image_files(base / "LR"), list_image_files(base / "HR")
    if [p.name for p in lr_paths] != [p.name for p in hr_paths]:
        raise SourceError(f"{base}: LR and HR hold different images")
    return [(lp.name, read_image(lp), read_image(hp)) for lp, hp in zip(lr_paths, hr_paths)]


def make_pairs_from_hr(folder: str | os.PathLike[str], scale: int) -> list[Pair]:
    """(name, LR, HR) from a folder of HR images: HR modcropped to a multiple of ``scale``,
    LR = MATLAB bicubic ``imresize(HR, 1/scale)``, as the standard test sets were made."""
    pairs = []
    for path in list_image_files(folder):
        hr = modcrop(read_image(path), scale)
        pairs.append((path.name, imresize(hr, 1 / scale), hr))
    return pairs


def bicubic_upscaler(scale: int) -> Upscaler:
    """The published baseline: MATLAB ``imresize(lr, scale, 'bicubic')`` of uint8, as uint8."""
    return lambda lr: imresize(np.asarray(lr, dtype=np.uint8), float(scale))


def network_upscaler(net: Any) -> Upscaler:
    """A torch network (float NCHW RGB in [0, 1] in, the same scaled up out) run on whole
    uint8 images, grey in, grey out (a grey image goes in as three equal channels)."""
    import torch  # only when a network is scored

    @torch.inference_mode()
    def run(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[:, :, None], 3, axis=2) if lr.ndim == 2 else lr
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255
        sr = net(x).float().clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
        return sr[:, :, 0].copy() if lr.ndim == 2 else sr
    return run


def pipeline_upscale_all(lrs: dict[str, np.ndarray], config: Any, scale: int,
                         overrides: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Upscale every image of ``lrs`` through one run of the full pipeline (``vsr_stream.upscale``
    on a temporary folder of PNGs). Returns SR uint8 by the same names, grey in, grey out.
    Raises what ``vsr_stream.upscale`` raises; SourceError if an output is missing."""
    from vsr_stream.api import upscale  # the API pulls in torch and zmq: import only when used

    stems = {name: Path(name).stem for name in lrs}
    if len(set(stems.values())) != len(stems):
        raise ModelInputError("pipeline_upscale_all: two names share a stem; outputs would collide")
    with tempfile.TemporaryDirectory(prefix="vsr-eval-") as tmp:
        lr_dir, out_dir = Path(tmp) / "lr", Path(tmp) / "sr"
        lr_dir.mkdir()
        for name, lr in lrs.items():
            write_png(lr_dir / f"{stems[name]}.png", lr)
        report = upscale(lr_dir, f"{out_dir}{os.sep}", scale=scale, config=config, overrides=overrides)
        log.info("pipeline: %s", report.summary())
        return {name: _read_output(out_dir / f"{stem}.png", lrs[name].ndim) for name, stem in stems.items()}


def _read_output(path: Path, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise SourceError(errno.ENOENT, f"the pipeline wrote no {path.name}")
    rgb = read_image(path)
    return rgb[:, :, 0].copy() if ndim == 2 and rgb.ndim == 3 else rgb


def pipeline_upscaler(config: Any, scale: int, overrides: dict[str, Any] | None = None) -> Upscaler:
    """The full pipeline as a one-image upscaler (one pipeline run per call; for many images
    :func:`pipeline_upscale_all` is much faster)."""
    return lambda lr: pipeline_upscale_all({"image.png": lr}, config, scale, overrides)["image.png"]


def evaluate_video(sr_path: str | os.PathLike[str], hr_path: str | os.PathLike[str], shave: int) -> EvalResult:
    """Score decoded frames of ``sr_path`` against ``hr_path`` pairwise (RGB, frame order).
    Raises SourceError if a file cannot be decoded, ModelInputError if frame counts or sizes differ."""
    scores = []
    for index, (sr, hr) in enumerate(itertools.zip_longest(_rgb_frames(sr_path), _rgb_frames(hr_path))):
        if sr is None or hr is None:
            longer = hr_path if sr is None else sr_path
            raise ModelInputError(f"frame counts differ: {longer} has more than {index} frames, the other has {index}")
        scores.append((f"frame_{index:06d}", sr, hr))
    return score_outputs(scores, shave, scale=None, set_name=Path(sr_path).name, method="video")


def _rgb_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    try:
        with av.open(os.fspath(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise SourceError(f"{path}: cannot decode video: {e}") from e


def run_eval(sets: list[str], scale: int, root: str | os.PathLike[str], method: str, config: Any = None,
             overrides: dict[str, Any] | None = None) -> dict[str, EvalResult]:
    """Evaluate ``method`` ('bicubic': MATLAB bicubic; 'pipeline': the full pipeline with
    ``config``/``overrides``) on each set of ``root`` (the sr-val layout) at ``scale``.
    Returns {set name: EvalResult}. Raises ConfigError for an unknown method."""
    if method not in METHODS:
        raise ConfigError(f"eval method must be one of {', '.join(METHODS)}, got {method!r}")
    results = {}
    cfg = None
    for set_name in sets:
        pairs = load_sr_val(root, set_name, scale)
        if method == "bicubic":
            results[set_name] = evaluate_pairs(pairs, bicubic_upscaler(scale), scale, set_name=set_name, method=method)
            continue
        if cfg is None:
            from vsr_stream.api import resolve_config  # pulls in torch and zmq: import only when used

            cfg = resolve_config(config, scale, overrides)
        srs = pipeline_upscale_all({name: lr for name, lr, _ in pairs}, cfg, scale)
        scored = score_outputs(((name, srs[name], hr) for name, _, hr in pairs), scale, scale=scale,
                               set_name=set_name, method=method)
        results[set_name] = replace(scored, cost=pipeline_cost((lr for _, lr, _ in pairs), cfg))
    return results
