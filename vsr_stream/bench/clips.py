"""The benchmark's clip: generated HR frames, kept for scoring, and the LR video both loops read.

``camera``: a camera panning and slowly zooming across pictures (``--images DIR``: its images
side by side at their own resolution, so the HR frames hold a photograph's real detail; else the
built-in :func:`~vsr_stream.media.synth.enlarged_picture`). ``static``: a fixed background
(the same kind of picture) with a few moving discs and sensor-like noise. Both go HR -> MATLAB bicubic /scale -> libx264 crf 23, so
the pipeline sees compression noise, and the HR frames are stored as a ``.npy`` memmap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import ConfigError
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.media.source import open_source
from vsr_stream.media.synth import (
    camera_canvas_size, camera_frames, enlarged_picture, mosaic, static_frames, write_lr_clip,
)
from vsr_stream.quality.evaluate import list_image_files, read_image

CLIP_KINDS = ("camera", "static")
LR_CRF = 23  # a typical camera/web encode: compression noise is present
STATIC_NOISE_SIGMA = 2.0  # grey levels of sensor noise added to each LR frame of the static clip
SEGMENT_FRAMES = 48  # camera clip: a cut to the next picture every this many frames
MIN_SIDE_PX = 16


@dataclass(frozen=True)
class Clip:
    """The clip both loops read. ``hr_path``: (frames, H, W, 3) uint8 ``.npy`` of the HR frames
    (None for a given input, which has no HR to score against)."""

    kind: str
    path: Path
    frames: int
    lr_hw: tuple[int, int]
    hr_path: Path | None = None

    def describe(self, scale: int, images: str | None) -> dict:
        """The clip as the bench result's ``clip`` entry."""
        h, w = self.lr_hw
        given = self.kind == "input"
        return {"kind": self.kind, "path": str(self.path) if given else None,
                "frames": self.frames, "lr_size": f"{w}x{h}", "hr_size": f"{w * scale}x{h * scale}",
                "scale": scale, "images": images, "lr_encode": None if given else f"libx264 crf {LR_CRF}",
                "lr_noise_sigma": STATIC_NOISE_SIGMA if self.kind == "static" else 0.0}


def parse_size(size: str) -> tuple[int, int]:
    """(width, height) from ``WIDTHxHEIGHT``; ConfigError unless both are even and >= 16."""
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError as e:
        raise ConfigError(f"--size must be WIDTHxHEIGHT, got {size!r}") from e
    if min(w, h) < MIN_SIDE_PX or w % 2 or h % 2:
        raise ConfigError(f"--size: both sides must be even and at least {MIN_SIDE_PX} px (4:2:0 video), got {size!r}")
    return w, h


def given_clip(path: str) -> Clip:
    """A clip the user gave: its frame count and size, no HR frames. Raises SourceError."""
    with open_source(path, DecodeConfig()) as source:
        video = source.info.video
        frames = sum(isinstance(item, VideoFrameItem) for item in source.items())
    return Clip("input", Path(path), frames, (video.height, video.width))


def make_clip(kind: str, folder: Path, *, lr_hw: tuple[int, int], frames: int, scale: int,
              images: str | None = None, keep_hr: bool = True, seed: int = 0) -> Clip:
    """Generate clip ``kind`` (see :data:`CLIP_KINDS`) of ``frames`` LR frames of ``lr_hw`` in
    ``folder`` (``<kind>.mp4``, and ``<kind>-hr.npy`` when ``keep_hr``). Deterministic for a
    given seed and pictures. Raises ConfigError for an unknown kind, SourceError for unreadable pictures."""
    if kind not in CLIP_KINDS:
        raise ConfigError(f"--clip must be one of {', '.join(CLIP_KINDS)}, got {kind!r}")
    h, w = lr_hw[0] * scale, lr_hw[1] * scale
    hr = hr_frames(kind, frames, h, w, images, seed)
    hr_path = folder / f"{kind}-hr.npy" if keep_hr else None
    if hr_path is not None:
        hr = _stored(hr, np.lib.format.open_memmap(hr_path, mode="w+", dtype=np.uint8, shape=(frames, h, w, 3)))
    path = folder / f"{kind}.mp4"
    noise = STATIC_NOISE_SIGMA if kind == "static" else 0.0
    n = write_lr_clip(path, hr, scale, crf=LR_CRF, noise_sigma=noise, seed=seed)
    return Clip(kind, path, n, lr_hw, hr_path)


def hr_frames(kind: str, frames: int, h: int, w: int, images: str | None, seed: int = 0) -> Iterator[np.ndarray]:
    """The HR frames of clip ``kind``: (h, w, 3) uint8, ``frames`` of them."""
    if kind == "camera":
        canvases = pictures(images, camera_canvas_size(h, w), math.ceil(frames / SEGMENT_FRAMES), seed)
        return camera_frames(canvases, frames, h, w, SEGMENT_FRAMES)
    first, *rest = pictures(images, (h, w), 2, seed)
    y0, x0 = (first.shape[0] - h) // 2, (first.shape[1] - w) // 2
    background = first[y0:y0 + h, x0:x0 + w]
    return static_frames(background, disc_textures(rest[0] if rest else first[::-1, ::-1], min(h, w) // 4), frames,
                         seed=seed)


def pictures(images: str | None, min_hw: tuple[int, int], count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB uint8 pictures of at least ``min_hw``: mosaics of the images of the folder
    ``images`` at their own resolution, taken in name order (:func:`~vsr_stream.media.synth.mosaic`;
    cycling through the folder when it runs out), else built-in test pictures
    (:func:`~vsr_stream.media.synth.enlarged_picture`, one seed each)."""
    if images is None:
        return [enlarged_picture(*min_hw, seed=seed + k) for k in range(count)]
    stream = (read_image(p) for p in itertools.cycle(list_image_files(images)))
    return [mosaic(stream, *min_hw) for _ in range(count)]


def disc_textures(source: np.ndarray, diameter_px: int, count: int = 3) -> list[np.ndarray]:
    """``count`` square (d, d, 3) patches of ``source`` along its diagonal, d = max(4, diameter_px)."""
    d = max(4, diameter_px)
    ys = np.linspace(0, source.shape[0] - d, count).astype(int)
    xs = np.linspace(0, source.shape[1] - d, count).astype(int)
    return [np.ascontiguousarray(source[y:y + d, x:x + d]) for y, x in zip(ys, xs)]


def _stored(frames: Iterator[np.ndarray], store: np.memmap) -> Iterator[np.ndarray]:
    """``frames`` passed through, each also written to ``store`` (flushed at the end)."""
    for i, frame in enumerate(frames):
        store[i] = frame
        yield frame
    store.flush()
