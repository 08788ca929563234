"""Training data: HR pictures (image folders, image files, videos) → aligned (LR, HR) patches.

LR is made the way the test sets were: HR modcropped to a multiple of the scale, then MATLAB
bicubic (antialiased) ``imresize(HR, 1/scale)`` of the whole picture, so a patch pair is an
exact crop of both. Each LR patch has a TVAT value (computed from the picture's VSP map, as
the classify stage does) that sorts it into a class.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsr_stream.errors import SourceError
from vsr_stream.ops.tvat import vsp
from vsr_stream.quality.evaluate import list_image_files, read_image
from vsr_stream.quality.imresize import imresize
from vsr_stream.quality.metrics import modcrop

if TYPE_CHECKING:
    import torch

    from vsr_stream.config import TrainConfig

log = logging.getLogger(__name__)

_VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".ts", ".m4v"})


@dataclass(frozen=True)
class Picture:
    """One training picture: HR (modcropped) and its LR, both (H, W, 3) uint8, plus a summed-area
    table of the LR VSP values at or above the threshold (int64, one extra zero row/column)."""

    hr: np.ndarray
    lr: np.ndarray
    vsp_sat: np.ndarray


def as_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def read_sources(sources: list[str], video_frame_step: int) -> list[np.ndarray]:
    """Every HR picture of ``sources`` (folders and files of images, video files) as RGB uint8."""
    pictures: list[np.ndarray] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            pictures += [as_rgb(read_image(p)) for p in list_image_files(path)]
        elif path.suffix.lower() in _VIDEO_SUFFIXES:
            pictures += video_frames(str(path), video_frame_step)
        elif path.is_file():
            pictures.append(as_rgb(read_image(path)))
        else:
            raise SourceError(f"training data not found: {source}")
    return pictures


def video_frames(path: str, step: int) -> list[np.ndarray]:
    """Every ``step``-th frame of a video as RGB uint8 (8-bit)."""
    from vsr_stream.config import DecodeConfig
    from vsr_stream.media.items import VideoFrameItem
    from vsr_stream.media.source import open_source

    with open_source(path, DecodeConfig()) as src:
        frames = [i.array for i in src.items() if isinstance(i, VideoFrameItem) and i.index % step == 0]
    return [(f >> 8).astype(np.uint8) if f.dtype == np.uint16 else f for f in frames]


def make_picture(hr: np.ndarray, scale: int, vsp_threshold: int) -> Picture:
    hr = modcrop(hr, scale)
    lr = imresize(hr, 1 / scale)
    v = vsp(lr)
    masked = np.where(v >= vsp_threshold, v, 0)
    sat = np.zeros((lr.shape[0] + 1, lr.shape[1] + 1), np.int64)
    sat[1:, 1:] = masked.cumsum(0).cumsum(1)
    return Picture(hr, lr, sat)


def downscaled_copies(hr: np.ndarray, factors: list[float]) -> list[np.ndarray]:
    """``hr`` and, for each factor, ``hr`` made smaller by MATLAB bicubic ``imresize(hr, factor)``:
    scale augmentation as FSRCNN and VDSR train it. A smaller copy packs the same content into fewer
    pixels, so its patches hold more detail per pixel than the original's."""
    return [hr] + [imresize(hr, f) for f in factors]


def load_pictures(sources: list[str], scale: int, vsp_threshold: int, video_frame_step: int,
                  min_lr_px: int, downscales: list[float] | None = None) -> list[Picture]:
    """Training pictures at ``scale``, each source picture also at each of ``downscales``
    (:func:`downscaled_copies`); pictures whose LR is smaller than ``min_lr_px`` are skipped."""
    pictures = [make_picture(h, scale, vsp_threshold) for hr in read_sources(sources, video_frame_step)
                for h in downscaled_copies(hr, downscales or [])]
    kept = [p for p in pictures if min(p.lr.shape[:2]) >= min_lr_px]
    if not kept:
        raise SourceError(f"no training picture has an LR side of at least {min_lr_px} px in {sources}")
    log.info("training on %d pictures (%d too small skipped)", len(kept), len(pictures) - len(kept))
    return kept


class PatchBank:
    """Candidate LR patch positions drawn uniformly over all pictures, with each patch's TVAT.

    ``context`` LR pixels of picture are kept free on every side of each patch, for the network to
    see around it (``TrainConfig.context_px``); TVAT and the scored region are the patch itself."""

    def __init__(self, pictures: list[Picture], lr_patch_px: int, count: int, rng: np.random.Generator,
                 context: int = 0) -> None:
        self.pictures = pictures
        self.size, self.context = lr_patch_px, context
        span = lr_patch_px + 2 * context
        areas = np.array([(p.lr.shape[0] - span + 1) * (p.lr.shape[1] - span + 1) for p in pictures], float)
        self.pic = rng.choice(len(pictures), size=count, p=areas / areas.sum())
        self.y = context + np.array([rng.integers(0, pictures[i].lr.shape[0] - span + 1) for i in self.pic])
        self.x = context + np.array([rng.integers(0, pictures[i].lr.shape[1] - span + 1) for i in self.pic])
        self.tvat = np.array([self._tvat(i, y, x) for i, y, x in zip(self.pic, self.y, self.x)])

    def _tvat(self, i: int, y: int, x: int) -> float:
        s, n = self.pictures[i].vsp_sat, self.size
        return float(s[y + n, x + n] - s[y, x + n] - s[y + n, x] + s[y, x]) / (n * n)

    def thresholds(self, quantiles: list[float]) -> list[float]:
        return [float(np.quantile(self.tvat, q)) for q in quantiles]

    def members(self, cls: int, thresholds: list[float]) -> np.ndarray:
        """Indices of the candidates in class ``cls`` (number of thresholds <= TVAT)."""
        classes = np.searchsorted(np.asarray(thresholds, float), self.tvat, side="right")
        return np.flatnonzero(classes == cls)


def patch_bank(cfg: TrainConfig, rng: np.random.Generator) -> PatchBank:
    """The run's candidate patches: the trainer draws its batches from it and the class thresholds
    come from its TVAT quantiles (the same positions for the same seed)."""
    span = cfg.lr_patch_px + 2 * cfg.context_px
    pictures = load_pictures(cfg.data, cfg.scale, cfg.vsp_threshold, cfg.video_frame_step, span, cfg.hr_downscales)
    return PatchBank(pictures, cfg.lr_patch_px, cfg.patch_pool, rng, cfg.context_px)


def sample_batch(bank: PatchBank, members: np.ndarray, batch: int, scale: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) float32 NCHW batches in [0, 1], with one random flip/rotation per patch pair. The LR
    patches carry ``bank.context`` pixels of context on each side; the HR patches are the core only
    (crop the network's output with :func:`scored`)."""
    n, s, c = bank.size, scale, bank.context
    lrs, hrs = [], []
    for j in rng.choice(members, size=batch):
        pic = bank.pictures[bank.pic[j]]
        y, x = int(bank.y[j]), int(bank.x[j])
        lr = pic.lr[y - c:y + n + c, x - c:x + n + c]
        hr = pic.hr[y * s:(y + n) * s, x * s:(x + n) * s]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        lrs.append(_dihedral(lr, k, flip))
        hrs.append(_dihedral(hr, k, flip))
    to = lambda a: np.ascontiguousarray(np.stack(a).transpose(0, 3, 1, 2), np.float32) / 255.0  # noqa: E731
    return to(lrs), to(hrs)


def scored(sr: torch.Tensor, context: int, scale: int) -> torch.Tensor:
    """The part of a network output over an LR batch with ``context`` px of context that the loss scores."""
    m = context * scale
    return sr[..., m:sr.shape[-2] - m, m:sr.shape[-1] - m] if m else sr


def _dihedral(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    img = np.rot90(img, k)
    return img[:, ::-1] if flip else img
