"""Tile geometry: how a frame is cut into tiles (pure functions, no I/O).

A tile has a *core* (the pixels whose upscaled values are blended into the output) and a
*window* (the core plus ``context_px`` of surrounding LR pixels, the input cut for the
network). Cores cover every pixel of the frame; the last core on each axis is aligned to
the frame edge, so right/bottom pixels are never dropped. All windows of a frame have the
same shape (they batch together) and never leave the frame; at a frame edge the window
edge is the frame edge, so a conv net's zero padding there matches a whole-frame run.
"""

from __future__ import annotations

import numpy as np

from vsr_stream.errors import ConfigError
from vsr_stream.messages import GEOM_COLUMNS


def axis_starts(dim: int, tile: int, stride: int) -> np.ndarray:
    """Start offsets of tiles of length ``tile`` along an axis of length ``dim``.

    Returns int64 ``(n,)``: ``[0]`` if ``dim <= tile``; else ``0, stride, 2*stride, ...``
    while below ``dim - tile``, then the edge-aligned ``dim - tile`` (never duplicated).
    Consecutive regular starts are ``stride`` apart; the last tile ends exactly at ``dim``.
    Raises :class:`ConfigError` unless ``dim, tile, stride >= 1``.
    """
    for name, value in (("dim", dim), ("tile", tile), ("stride", stride)):
        if value < 1:
            raise ConfigError(f"axis_starts: {name} must be >= 1, got {value}")
    if dim <= tile:
        return np.zeros(1, dtype=np.int64)
    last = dim - tile
    return np.append(np.arange(0, last, stride, dtype=np.int64), np.int64(last))


def plan_tiles(h: int, w: int, tile_px: int, overlap_px: int, context_px: int) -> np.ndarray:
    """Tile plan of an ``h x w`` frame: int32 ``(n, 9)``, columns ``messages.GEOM_COLUMNS``.

    Rows are in row-major order with ``tile_id = 0..n-1``. Per axis, the tile count ``n`` is
    what tiles of ``tile_px`` with stride ``tile_px - overlap_px`` need (:func:`axis_starts`),
    and the cores are balanced to the same count: size ``ceil((dim + (n-1)*overlap_px) / n)``
    (at most ``tile_px``; ``dim`` when one tile covers the axis), starting at :func:`axis_starts`
    with stride ``core - overlap_px``, together covering the frame. So a frame a little larger
    than a tile is cut into two smaller tiles rather than two full ones that overlap almost
    entirely, and tiling costs less extra work. Windows have size
    ``min(core + 2*context_px, dim)`` per axis (identical for every tile) and start at
    ``clamp(core_start - context_px, 0, dim - window)``, so each lies inside the frame and
    contains its core. Raises :class:`ConfigError` unless ``h, w >= 1``, ``tile_px >= 1``,
    ``0 <= overlap_px < tile_px`` and ``context_px >= 0``.
    """
    _check_plan_args(h, w, tile_px, overlap_px, context_px)
    y0, wy0, th, wh = _axis_plan(h, tile_px, overlap_px, context_px)
    x0, wx0, tw, ww = _axis_plan(w, tile_px, overlap_px, context_px)
    gy, gx = np.meshgrid(np.arange(len(y0)), np.arange(len(x0)), indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    n = gy.size
    geom = np.empty((n, len(GEOM_COLUMNS)), dtype=np.int32)
    geom[:, 0] = np.arange(n)
    geom[:, 1], geom[:, 2], geom[:, 3], geom[:, 4] = y0[gy], x0[gx], th, tw
    geom[:, 5], geom[:, 6], geom[:, 7], geom[:, 8] = wy0[gy], wx0[gx], wh, ww
    return geom


def _axis_plan(dim: int, tile_px: int, overlap_px: int, context_px: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Core starts, window starts, core size and window size along one axis."""
    n = len(axis_starts(dim, tile_px, tile_px - overlap_px))
    core = -(-(dim + (n - 1) * overlap_px) // n)  # the same n tiles, evenly sized (<= tile_px)
    window = min(core + 2 * context_px, dim)
    starts = axis_starts(dim, core, core - overlap_px) if n > 1 else np.zeros(1, dtype=np.int64)
    window_starts = np.clip(starts - context_px, 0, dim - window)
    return starts, window_starts, core, window


def _check_plan_args(h: int, w: int, tile_px: int, overlap_px: int, context_px: int) -> None:
    if h < 1 or w < 1:
        raise ConfigError(f"plan_tiles: frame size must be at least 1x1, got h={h} w={w}")
    if tile_px < 1:
        raise ConfigError(f"plan_tiles: tile_px must be >= 1, got {tile_px}")
    if not 0 <= overlap_px < tile_px:
        raise ConfigError(f"plan_tiles: overlap_px must be in [0, tile_px={tile_px}), got {overlap_px}")
    if context_px < 0:
        raise ConfigError(f"plan_tiles: context_px must be >= 0, got {context_px}")


def intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pairwise intersection of the rectangles ``a`` (int ``(n, 4)``) and ``b`` (``(m, 4)``), each
    ``(y0, x0, h, w)``: ``(top, left, bottom, right)`` as one int64 ``(n, m, 4)`` array, and a bool
    ``(n, m)`` that is True where the two share a pixel (``top < bottom`` and ``left < right``)."""
    a, b = np.asarray(a, dtype=np.int64)[:, None, :], np.asarray(b, dtype=np.int64)[None, :, :]
    box = np.stack([np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1]),
                    np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]),
                    np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])], axis=-1)
    return box, (box[..., 0] < box[..., 2]) & (box[..., 1] < box[..., 3])
