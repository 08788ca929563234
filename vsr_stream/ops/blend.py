"""Feathered overlap blending of upscaled tiles into a frame.

Each tile is added to a float32 accumulator with a weight that falls off toward its edges,
the weights are summed beside it, and the frame is ``round(acc / wsum)``. Tiles that agree
on a pixel therefore give exactly that value back, whatever their weights. These NumPy
functions define the result; ``kernels/blend.cu`` must match them. ``xp`` is numpy or cupy
(default: the module of the arrays passed in).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.ops import array_module


def feather_weights(h: int, w: int, ramp_px: int, xp: ModuleType = np) -> Any:
    """Separable blend weights of an ``h x w`` tile: float32 ``(h, w)`` in ``(0, 1]``.

    Along an axis of length L the weight at index i is ``min(d + 1, ramp_px) / ramp_px``
    with ``d = min(i, L - 1 - i)`` (distance to the nearest edge); ``ramp_px <= 0`` gives
    all ones. The result is symmetric and strictly positive. Raises :class:`ConfigError`
    unless ``h, w >= 1``.
    """
    if h < 1 or w < 1:
        raise ConfigError(f"feather_weights: tile size must be at least 1x1, got h={h} w={w}")
    if ramp_px <= 0:
        return xp.ones((h, w), dtype=xp.float32)
    return _ramp(h, ramp_px, xp)[:, None] * _ramp(w, ramp_px, xp)[None, :]


def _ramp(length: int, ramp_px: int, xp: ModuleType) -> Any:
    i = xp.arange(length)
    d = xp.minimum(i, length - 1 - i)
    return xp.minimum(d + 1, ramp_px).astype(xp.float32) / xp.float32(ramp_px)


def accumulate(acc: Any, wsum: Any, tile: Any, weight: Any, y0: int, x0: int) -> None:
    """Add ``tile * weight`` at ``(y0, x0)`` into ``acc`` and ``weight`` into ``wsum``, in place.

    ``acc``: float32 ``(H, W, C)``; ``wsum``: float32 ``(H, W)``; ``tile``: ``(h, w, C)`` of
    any numeric dtype; ``weight``: float32 ``(h, w)``; the tile must lie inside the frame.
    Raises :class:`ModelInputError` (a ValueError) naming what was expected and what arrived.
    """
    _check_accumulate(acc, wsum, tile, weight, y0, x0)
    h, w = weight.shape
    xp = array_module(acc)
    acc[y0 : y0 + h, x0 : x0 + w, :] += tile.astype(xp.float32) * weight[..., None]
    wsum[y0 : y0 + h, x0 : x0 + w] += weight


def _check_accumulate(acc: Any, wsum: Any, tile: Any, weight: Any, y0: int, x0: int) -> None:
    if acc.ndim != 3 or acc.dtype != np.float32:
        raise ModelInputError(f"accumulate: acc must be float32 (H, W, C), got {acc.dtype} {tuple(acc.shape)}")
    if tuple(wsum.shape) != tuple(acc.shape[:2]) or wsum.dtype != np.float32:
        raise ModelInputError(
            f"accumulate: wsum must be float32 {tuple(acc.shape[:2])}, got {wsum.dtype} {tuple(wsum.shape)}"
        )
    if tile.ndim != 3 or tile.shape[2] != acc.shape[2]:
        raise ModelInputError(f"accumulate: tile must be (h, w, {acc.shape[2]}), got {tuple(tile.shape)}")
    if tuple(weight.shape) != tuple(tile.shape[:2]):
        raise ModelInputError(f"accumulate: weight must be {tuple(tile.shape[:2])}, got {tuple(weight.shape)}")
    h, w = weight.shape
    if y0 < 0 or x0 < 0 or y0 + h > acc.shape[0] or x0 + w > acc.shape[1]:
        raise ModelInputError(
            f"accumulate: a {h}x{w} tile at (y0={y0}, x0={x0}) does not fit a {acc.shape[0]}x{acc.shape[1]} frame"
        )


def normalize(acc: Any, wsum: Any, dtype: Any) -> Any:
    """The blended frame: ``round_half_even(acc / wsum)`` clipped to ``dtype``'s range.

    ``acc``: float32 ``(H, W, C)``; ``wsum``: float32 ``(H, W)``; ``dtype``: an integer
    dtype (uint8 -> 0..255, uint16 -> 0..65535). Returns ``(H, W, C)`` of ``dtype``.
    Raises :class:`ModelInputError` (a ValueError) if any pixel has ``wsum <= 0``: a pixel
    no tile covered is a planning bug and must never pass silently.
    """
    xp = array_module(acc)
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        raise ModelInputError(f"normalize: expected an integer output dtype, got {dtype}")
    uncovered = int((~(wsum > 0)).sum())
    if uncovered:
        raise ModelInputError(
            f"normalize: {uncovered} pixel(s) have no tile weight (wsum <= 0); the tiles do not cover the frame"
        )
    info = np.iinfo(dtype)
    out = xp.rint(acc / wsum[..., None])
    return xp.clip(out, info.min, info.max).astype(dtype)
