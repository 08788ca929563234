"""TVAT (MMSR paper): how much texture a tile holds, used to route it to an SR branch.

VSP of a pixel = sum over its 8 neighbours and 3 channels of ``(p - q)**2``, integers on the
0-255 scale (uint16 frames are taken as ``frame >> 8``). Border rule: VSP is computed once
on the whole frame; neighbours outside the frame are skipped (contribute 0), and
neighbours across tile boundaries are the real frame pixels, so a tile's VSP does not
depend on how the frame was cut. TVAT of a tile = (sum of VSP values >= threshold inside
its core) / (core pixels). These NumPy functions define the result; ``kernels/tvat.cu``
must match them exactly. Every function takes ``xp`` (numpy or cupy, default: the
input's module).
"""

from __future__ import annotations

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
    Returns int64 ``(H, W)``, exact, each value in ``[0, 8 * 3 * 255**2]``.
    Raises :class:`ModelInputError` for another shape or dtype.
    """
    xp = xp or array_module(frame)
    f = _as_int_rgb(frame, xp)
    h, w = f.shape[:2]
    out = xp.zeros((h, w), dtype=xp.int64)
    for dy, dx in _HALF_NEIGHBOURHOOD:
        a, b = _pair_slices(h, w, dy, dx)
        d = ((f[a] - f[b]) ** 2).sum(axis=-1, dtype=xp.int64)
        out[a] += d
        out[b] += d
    return out


def _as_int_rgb(frame: Any, xp: ModuleType) -> Any:
    """``frame`` as int32 on the 0-255 scale, after checking shape and dtype."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ModelInputError(f"vsp: expected an (H, W, 3) frame, got shape {tuple(frame.shape)}")
    if frame.dtype == xp.uint8:
        return frame.astype(xp.int32)
    if frame.dtype == xp.uint16:
        return (frame >> 8).astype(xp.int32)
    raise ModelInputError(f"vsp: expected a uint8 or uint16 frame, got {frame.dtype}")


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
    Raises :class:`ModelInputError` for a bad geometry array or a core outside the map.
    """
    xp = xp or array_module(vsp_map)
    y0, x0, y1, x1 = _core_bounds(geom, vsp_map.shape, xp)
    kept = xp.where(vsp_map >= vsp_threshold, vsp_map, 0).astype(xp.int64)
    sat = xp.zeros((kept.shape[0] + 1, kept.shape[1] + 1), dtype=xp.int64)
    sat[1:, 1:] = xp.cumsum(xp.cumsum(kept, axis=0), axis=1)
    sums = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return sums.astype(xp.float64) / ((y1 - y0) * (x1 - x0)).astype(xp.float64)


def _core_bounds(geom: Any, shape: tuple[int, ...], xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Core corners ``y0, x0, y1, x1`` (int64 arrays) of ``geom``, checked against ``shape``."""
    g = xp.asarray(geom).astype(xp.int64)
    if g.ndim != 2 or g.shape[1] != 9:
        raise ModelInputError(f"tile_tvat: expected geometry of shape (n, 9), got {tuple(g.shape)}")
    y0, x0, h, w = g[:, 1], g[:, 2], g[:, 3], g[:, 4]
    y1, x1 = y0 + h, x0 + w
    inside = (y0 >= 0) & (x0 >= 0) & (h >= 1) & (w >= 1) & (y1 <= shape[0]) & (x1 <= shape[1])
    if not bool(inside.all()):
        raise ModelInputError(f"tile_tvat: a tile core is empty or outside the {shape[0]}x{shape[1]} VSP map")
    return y0, x0, y1, x1


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
