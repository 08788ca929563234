"""TVAT (MMSR paper): how much texture a tile holds, used to route it to an SR branch.

VSP of a pixel = sum over its 8 neighbours and 3 channels of ``(p - q)**2``, integers on the
0-255 scale (uint16 frames are taken as ``frame >> 8``). Border rule: VSP is computed once
on the whole frame; neighbours outside the frame are skipped (contribute 0), and
neighbours across tile boundaries are the real frame pixels, so a tile's VSP does not
depend on how the frame was cut. TVAT of a tile = (sum of VSP values >= threshold inside
its core) / (core pixels). The MAD of a tile (:func:`tile_mad`) = mean over its core's
pixels and channels of ``|frame - prev|`` on the same 0-255 scale, to spot unchanged tiles.

These NumPy functions define the result; ``kernels/tvat.cu`` must match them exactly. Every
function takes ``xp`` (numpy or cupy, default: the input's module); with cupy, ``vsp``,
``tile_tvat`` and ``tile_mad`` run those kernels and give bit-identical results.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.ops import array_module

# Each neighbour pair is visited once through one of these four offsets (dy, dx) and its
# squared difference added to both pixels: the other four directions are the same pairs.
_HALF_NEIGHBOURHOOD = ((0, 1), (1, 0), (1, 1), (1, -1))


def vsp(frame: Any, xp: ModuleType | None = None) -> Any:
    """VSP map of an RGB frame.

    ``frame``: ``(H, W, 3)`` uint8 (0-255) or uint16 (scaled by ``>> 8``), H, W >= 1.
    Returns int64 ``(H, W)``, exact, each value in ``[0, 8 * 3 * 255**2]``, on ``frame``'s device.
    Raises :class:`ModelInputError` for another shape or dtype.
    """
    xp = xp or array_module(frame)
    _check_rgb(frame, "vsp")
    h, w = frame.shape[:2]
    if xp.__name__ == "cupy":
        out = xp.empty((h, w), dtype=xp.int64)
        args = (xp.ascontiguousarray(frame), out, np.int32(h), np.int32(w))
        _launch_tvat(f"vsp_{_SUFFIX[frame.dtype.name]}", h * w, args)
        return out
    # Planar int32: a VSP value is at most 8 * 3 * 255**2 < 2**31, and summing the three channel
    # planes beats reducing a length-3 last axis (2.8-4.5x faster than pixel-interleaved int64
    # from 320x180 to 1920x1080; docs/performance.md)
    f = xp.ascontiguousarray(xp.moveaxis(_as_int_rgb(frame, xp), -1, 0))
    out = xp.zeros((h, w), dtype=xp.int32)
    for dy, dx in _HALF_NEIGHBOURHOOD:
        a, b = _pair_slices(h, w, dy, dx)
        d = f[(slice(None), *a)] - f[(slice(None), *b)]
        d *= d
        s = d[0]
        s += d[1]
        s += d[2]
        out[a] += s
        out[b] += s
    return out.astype(xp.int64)


_SUFFIX = {"uint8": "u8", "uint16": "u16"}  # frame dtype -> kernel name suffix


def _check_rgb(frame: Any, who: str) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ModelInputError(f"{who}: expected an (H, W, 3) frame, got shape {tuple(frame.shape)}")
    if frame.dtype.name not in _SUFFIX:
        raise ModelInputError(f"{who}: expected a uint8 or uint16 frame, got {frame.dtype}")


def _as_int_rgb(frame: Any, xp: ModuleType) -> Any:
    """A checked ``frame`` as int32 on the 0-255 scale."""
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(xp.int32)
    return frame.astype(xp.int32)


def _pair_slices(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``a, b`` such that ``a`` pixel (y, x) pairs with ``b`` pixel (y+dy, x+dx)."""
    ys_a, ys_b = slice(0, h - dy), slice(dy, h)
    if dx >= 0:
        xs_a, xs_b = slice(0, w - dx), slice(dx, w)
    else:
        xs_a, xs_b = slice(-dx, w), slice(0, w + dx)
    return (ys_a, xs_a), (ys_b, xs_b)


def tile_tvat(vsp_map: Any, geom: Any, vsp_threshold: int, xp: ModuleType | None = None) -> Any:
    """TVAT of each tile core.

    ``vsp_map``: integer ``(H, W)`` from :func:`vsp`. ``geom``: int ``(n, 9)`` rows as in
    ``messages.GEOM_COLUMNS``; only the core (y0, x0, h, w) is used and must lie inside
    the map. Returns float64 ``(n,)``: sum of VSP values ``>= vsp_threshold`` in the core
    divided by ``h * w``. Cost O(H*W + n) through a summed-area table.
    Raises :class:`ModelInputError` for a bad map or geometry array or a core outside the map.
    """
    xp = xp or array_module(vsp_map)
    if vsp_map.ndim != 2:
        raise ModelInputError(f"tile_tvat: expected an (H, W) VSP map, got shape {tuple(vsp_map.shape)}")
    if xp.__name__ == "cupy":
        # VSP values are integers, so v >= t is v >= ceil(t) even for a fractional threshold.
        args = (xp.ascontiguousarray(vsp_map, dtype=xp.int64), np.int32(vsp_map.shape[1]),
                np.int64(math.ceil(vsp_threshold)))
        return _tile_means_cuda("tile_vsp_sums", args, geom, vsp_map.shape, 1, xp, "tile_tvat")
    core = _core_bounds(geom, vsp_map.shape, xp, "tile_tvat")
    kept = xp.where(vsp_map >= vsp_threshold, vsp_map, 0).astype(xp.int64)
    return _box_sums(kept, core, xp).astype(xp.float64) / _core_values(core, 1, xp)


def tile_mad(frame: Any, prev: Any, geom: Any, xp: ModuleType | None = None) -> Any:
    """Mean absolute difference between ``frame`` and ``prev`` over each tile core.

    ``frame``, ``prev``: ``(H, W, 3)`` uint8, or uint16 (taken as ``>> 8``), of the same shape
    and dtype. ``geom``: int ``(n, 9)`` rows as in ``messages.GEOM_COLUMNS``; only the core is
    used and must lie inside the frame. Returns float64 ``(n,)`` in ``[0, 255]``: the sum over
    the core's pixels and channels of ``|frame - prev|`` (0-255 scale) divided by ``3 * h * w``.
    Raises :class:`ModelInputError` for bad frames or geometry.
    """
    xp = xp or array_module(frame)
    _check_rgb(frame, "tile_mad")
    if prev.shape != frame.shape or prev.dtype != frame.dtype:
        raise ModelInputError(
            f"tile_mad: prev must have the frame's shape {tuple(frame.shape)} and dtype {frame.dtype}, "
            f"got {tuple(prev.shape)} {prev.dtype}"
        )
    if xp.__name__ == "cupy":
        args = (xp.ascontiguousarray(frame), xp.ascontiguousarray(prev), np.int32(frame.shape[1]))
        kernel = f"tile_absdiff_{_SUFFIX[frame.dtype.name]}"
        return _tile_means_cuda(kernel, args, geom, frame.shape, 3, xp, "tile_mad")
    core = _core_bounds(geom, frame.shape, xp, "tile_mad")
    a, b = (frame, prev) if frame.dtype == np.uint8 else (frame >> 8, prev >> 8)
    # |a - b| without widening: max - min stays in 0..255; three channels fit uint16. Adding the
    # channel planes, not reducing the length-3 last axis: 0.08 against 1.38 ms on a frame's 18
    # stacked 63x57 cores (one AVX2 core), the same sums
    d = xp.maximum(a, b) - xp.minimum(a, b)
    diff = d[..., 0].astype(xp.uint16)
    diff += d[..., 1]
    diff += d[..., 2]
    return _box_sums(diff, core, xp).astype(xp.float64) / _core_values(core, 3, xp)


def _core_bounds(geom: Any, shape: tuple[int, ...], xp: ModuleType, who: str) -> tuple[Any, Any, Any, Any]:
    """Core corners ``y0, x0, y1, x1`` (int64 arrays) of ``geom``, checked against ``shape``."""
    g = xp.asarray(geom).astype(xp.int64)
    if g.ndim != 2 or g.shape[1] != 9:
        raise ModelInputError(f"{who}: expected geometry of shape (n, 9), got {tuple(g.shape)}")
    y0, x0, h, w = g[:, 1], g[:, 2], g[:, 3], g[:, 4]
    y1, x1 = y0 + h, x0 + w
    inside = (y0 >= 0) & (x0 >= 0) & (h >= 1) & (w >= 1) & (y1 <= shape[0]) & (x1 <= shape[1])
    if not bool(inside.all()):
        raise ModelInputError(f"{who}: a tile core is empty or outside the {shape[0]}x{shape[1]} frame")
    return y0, x0, y1, x1


def _box_sums(values: Any, core: tuple[Any, Any, Any, Any], xp: ModuleType) -> Any:
    """int64 sum of the integer ``(H, W)`` ``values`` inside each core, via a summed-area table."""
    y0, x0, y1, x1 = core
    sat = xp.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=xp.int64)
    sat[1:, 1:] = xp.cumsum(xp.cumsum(values, axis=0, dtype=xp.int64), axis=1)
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


def _core_values(core: tuple[Any, Any, Any, Any], channels: int, xp: ModuleType) -> Any:
    """float64 number of values in each core: pixels times ``channels``."""
    y0, x0, y1, x1 = core
    return ((y1 - y0) * (x1 - x0) * channels).astype(xp.float64)


def _tile_means_cuda(kernel: str, args: tuple[Any, ...], geom: Any, shape: tuple[int, ...], channels: int,
                     cp: ModuleType, who: str) -> Any:
    """Per-tile integer sums from a ``tvat.cu`` kernel, divided as the NumPy path divides.

    The kernel takes ``(geom, n, max_w, *args, sums)`` with one thread per (tile, core column).
    The geometry is checked on the host (it is small) before any thread reads it.
    """
    g = cp.asnumpy(geom)
    core = _core_bounds(g, shape, np, who)  # before the cast: the cores' values then fit int32
    n, max_w = len(g), int((core[3] - core[1]).max(initial=0))
    sums = cp.zeros(n, dtype=cp.uint64)  # CUDA has no signed 64-bit atomicAdd: same bits, viewed below
    geom32 = cp.asarray(np.ascontiguousarray(g, dtype=np.int32))
    _launch_tvat(kernel, n * max_w, (geom32, np.int32(n), np.int32(max_w), *args, sums))
    return sums.view(cp.int64).astype(cp.float64) / cp.asarray(_core_values(core, channels, np))


def _launch_tvat(kernel: str, threads: int, args: tuple[Any, ...]) -> None:
    from vsr_stream.ops import _kernels  # CuPy-only code: imported on first GPU use

    _kernels.launch(_kernels.function("tvat", kernel), threads, args)


def classify(tvat_values: Any, thresholds: Sequence[float], xp: ModuleType | None = None) -> Any:
    """Class of each tile: the number of ``thresholds`` that are ``<= tvat``.

    ``tvat_values``: float ``(n,)``. ``thresholds``: ascending, at most 127 of them (empty:
    every tile is class 0). A value exactly equal to a threshold goes to the upper class.
    Returns int8 ``(n,)`` in ``[0, len(thresholds)]``.
    Raises :class:`ConfigError` if the thresholds are not ascending or too many.
    """
    xp = xp or array_module(tvat_values)
    bounds = np.asarray(thresholds, dtype=np.float64)
    if bounds.ndim != 1 or bounds.size > 127 or np.any(np.diff(bounds) < 0):
        raise ConfigError(
            f"classify: thresholds must be an ascending list of at most 127 values, got {list(thresholds)}"
        )
    return xp.searchsorted(xp.asarray(bounds), xp.asarray(tvat_values), side="right").astype(xp.int8)
