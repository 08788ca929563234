"""Temporal reuse: which tiles of a frame may take the previous output's pixels (pure functions).

A tile is *unchanged* when its LR core is close to the core it had when it was last upscaled:
the core is split into blocks of about ``block_px`` (:func:`block_rows`) and every block's mean
absolute difference (:func:`~vsr_stream.ops.tvat.tile_mad`, 0-255 scale) must be at most the
threshold. A maximum over blocks, not one mean over the core, so that a small object moving
inside a large tile is not averaged away. An unchanged tile is reused unless it has already been
reused ``max_age_frames`` times in a row (:func:`decide_reuse`). The caller keeps the state: the
reference cores (one per tile, so overlapping cores each keep their own content) and the ages.
A reused tile may also take the bicubic upscale of the frame's change since the previous one
(:func:`lr_change`; applied by ``stages.stitch.corrected_previous``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from vsr_stream.errors import ModelInputError
from vsr_stream.ops import array_module
from vsr_stream.ops.tvat import tile_mad


def core_rows(geom: np.ndarray) -> np.ndarray:
    """``geom`` (int ``(n, 9)``, ``messages.GEOM_COLUMNS``) with each window set to its core: cutting
    these windows cuts the cores. A new int32 array."""
    rows = np.array(geom, dtype=np.int32)
    rows[:, 5:9] = rows[:, 1:5]
    return rows


def scaled_rows(geom: np.ndarray, scale: int) -> np.ndarray:
    """``geom``'s rows in HR pixels: every coordinate and size column times ``scale`` (tile ids kept)."""
    rows = np.array(geom, dtype=np.int32)
    rows[:, 1:9] *= scale
    return rows


def _axis_blocks(length: int, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of ``ceil(length / block_px)`` evenly sized blocks that partition ``length``."""
    n = -(-length // block_px)
    edges = (np.arange(n + 1) * length) // n
    return edges[:-1], np.diff(edges)


def block_rows(n: int, core_h: int, core_w: int, block_px: int) -> np.ndarray:
    """Geometry of the blocks of ``n`` stacked cores, for :func:`~vsr_stream.ops.tvat.tile_mad`.

    The cores are stacked on the vertical axis (core ``i`` at rows ``i*core_h``), as
    ``cores.reshape(n * core_h, core_w, C)`` lays them out. Each core is cut into the same
    ``by * bx`` blocks (about ``block_px`` a side, evenly sized, partitioning the core). Returns int32
    ``(n * by * bx, 9)``, core columns only (windows equal the cores), core ``i``'s blocks at rows
    ``i*by*bx .. (i+1)*by*bx - 1``. Raises :class:`ModelInputError` unless every size is >= 1.
    """
    if min(n, core_h, core_w, block_px) < 1:
        raise ModelInputError(f"block_rows: sizes must be >= 1, got n={n} core {core_h}x{core_w} block_px={block_px}")
    ys, hs = _axis_blocks(core_h, block_px)
    xs, ws = _axis_blocks(core_w, block_px)
    tile, by, bx = np.meshgrid(np.arange(n), np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    tile, by, bx = tile.ravel(), by.ravel(), bx.ravel()
    rows = np.zeros((tile.size, 9), dtype=np.int32)
    rows[:, 0] = np.arange(tile.size)
    rows[:, 1], rows[:, 2] = tile * core_h + ys[by], xs[bx]
    rows[:, 3], rows[:, 4] = hs[by], ws[bx]
    return core_rows(rows)


def core_change(cores: Any, reference: Any, block_px: int) -> np.ndarray:
    """How much each core changed: the largest block mean absolute difference, host float64 ``(n,)``.

    ``cores``, ``reference``: ``(n, h, w, 3)`` uint8 or uint16 (compared as ``>> 8``), the same shape
    and dtype, on one device (NumPy or CuPy; the result comes back to the host, a value per tile).
    Each core is cut into blocks as :func:`block_rows` says; a block's value is
    :func:`~vsr_stream.ops.tvat.tile_mad` (0-255 scale). Raises :class:`ModelInputError` for
    mismatched stacks.
    """
    if cores.ndim != 4 or cores.shape != reference.shape or cores.dtype != reference.dtype:
        raise ModelInputError(f"core_change: expected two (n, h, w, 3) stacks of one shape and dtype, got "
                              f"{tuple(cores.shape)} {cores.dtype} and {tuple(reference.shape)} {reference.dtype}")
    n, h, w, channels = cores.shape
    blocks = block_rows(n, h, w, block_px)
    mad = tile_mad(cores.reshape(n * h, w, channels), reference.reshape(n * h, w, channels), blocks)
    return to_host(mad, array_module(mad)).reshape(n, -1).max(axis=1)


def decide_reuse(change: np.ndarray, age: np.ndarray, mad_threshold: float,
                 max_age_frames: int, min_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Which tiles to reuse, and their ages after this frame.

    ``change``: float ``(n,)`` from :func:`core_change`; ``age``: int ``(n,)``, frames each tile has
    been reused in a row. A tile is unchanged when ``change <= mad_threshold``, and reused when it
    is unchanged and ``age < max_age_frames``, unless fewer than ``min_fraction`` of the ``n`` tiles
    are unchanged: then none is reused, and as after any frame upscaled whole the ages restart
    staggered (:func:`first_ages`). The forced refreshes of old tiles do not count against
    ``min_fraction``: they are spread a few a frame, and a static scene keeps its reuse whatever
    ``max_age_frames`` is.
    Returns bool ``reused (n,)`` and int64 ``age (n,)``: ``age + 1`` where reused, 0 where
    upscaled. Raises :class:`ModelInputError` if the shapes differ.
    """
    if change.shape != age.shape or change.ndim != 1:
        raise ModelInputError(f"decide_reuse: change and age must be (n,), got {change.shape} and {age.shape}")
    unchanged = change <= mad_threshold
    if unchanged.sum() < min_fraction * len(unchanged):
        return np.zeros_like(unchanged), first_ages(len(unchanged), max_age_frames)
    reused = unchanged & (age < max_age_frames)
    return reused, np.where(reused, age + 1, 0).astype(np.int64)


_SIGNED = {"uint8": "int16", "uint16": "int32"}  # frame dtype -> what holds a difference of two


def lr_change(frame: Any, previous: Any) -> Any:
    """``frame - previous`` as signed integers wide enough for it: int16 for uint8 frames, int32 for
    uint16; ``(h, w, 3)`` on the frames' device. Raises :class:`ModelInputError` unless both have one
    shape and one of those dtypes."""
    if frame.shape != previous.shape or frame.dtype != previous.dtype or frame.dtype.name not in _SIGNED:
        raise ModelInputError(f"lr_change: expected two uint8 or uint16 frames of one shape, got "
                              f"{tuple(frame.shape)} {frame.dtype} and {tuple(previous.shape)} {previous.dtype}")
    signed = _SIGNED[frame.dtype.name]
    return frame.astype(signed) - previous.astype(signed)


def first_ages(n: int, max_age_frames: int) -> np.ndarray:
    """Ages to start ``n`` tiles from after a reset: int64 ``(n,)`` spread evenly over ``[0,
    max_age_frames)``, so that in a static scene the refreshes :func:`decide_reuse` forces come a
    few tiles a frame instead of every tile in the same frame (a burst of work, a latency spike)."""
    return (np.arange(n, dtype=np.int64) * max_age_frames) // max(n, 1)


def to_host(a: Any, xp: ModuleType) -> np.ndarray:
    """``a`` as a NumPy array (a copy from the device under CuPy; ``a`` itself under NumPy)."""
    return a if xp is np else xp.asnumpy(a)
