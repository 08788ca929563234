"""Feathered overlap blending of upscaled tiles into a frame.

Each tile is added to a float32 accumulator with a weight that falls off toward its edges,
the weights are summed beside it, and the frame is ``round(acc / wsum)``. Tiles that agree
on a pixel therefore give exactly that value back, whatever their weights. These NumPy
functions define the result; ``kernels/blend.cu`` must match them. ``xp`` is numpy or cupy
(default: the module of the arrays passed in); with CuPy arrays, :func:`accumulate_tiles` and
:func:`normalize` run those kernels. :func:`stitch_cores` is the CPU's way to the same frame,
bit for bit: it pastes each core and blends only where cores overlap.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.geometry import intersections
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
    if xp is np:
        return _host_feather_weights(h, w, ramp_px)
    return _feather_weights(h, w, ramp_px, xp)


@functools.lru_cache(maxsize=64)
def _host_feather_weights(h: int, w: int, ramp_px: int) -> np.ndarray:
    """Cached: every frame of a run has the same few tile shapes. Read-only, so callers cannot
    change the cached copy."""
    weights = _feather_weights(h, w, ramp_px, np)
    weights.flags.writeable = False
    return weights


def _feather_weights(h: int, w: int, ramp_px: int, xp: ModuleType) -> Any:
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


def _check_canvas(acc: Any, wsum: Any, who: str) -> None:
    if acc.ndim != 3 or acc.dtype != np.float32:
        raise ModelInputError(f"{who}: acc must be float32 (H, W, C), got {acc.dtype} {tuple(acc.shape)}")
    if tuple(wsum.shape) != tuple(acc.shape[:2]) or wsum.dtype != np.float32:
        raise ModelInputError(
            f"{who}: wsum must be float32 {tuple(acc.shape[:2])}, got {wsum.dtype} {tuple(wsum.shape)}"
        )


def _check_accumulate(acc: Any, wsum: Any, tile: Any, weight: Any, y0: int, x0: int) -> None:
    _check_canvas(acc, wsum, "accumulate")
    if tile.ndim != 3 or tile.shape[2] != acc.shape[2]:
        raise ModelInputError(f"accumulate: tile must be (h, w, {acc.shape[2]}), got {tuple(tile.shape)}")
    if tuple(weight.shape) != tuple(tile.shape[:2]):
        raise ModelInputError(f"accumulate: weight must be {tuple(tile.shape[:2])}, got {tuple(weight.shape)}")
    h, w = weight.shape
    if y0 < 0 or x0 < 0 or y0 + h > acc.shape[0] or x0 + w > acc.shape[1]:
        raise ModelInputError(
            f"accumulate: a {h}x{w} tile at (y0={y0}, x0={x0}) does not fit a {acc.shape[0]}x{acc.shape[1]} frame"
        )


def accumulate_tiles(acc: Any, wsum: Any, windows: Any, geom: Any, scale: int, ramp_px: int) -> None:
    """Blend a batch of upscaled tile windows into ``acc`` and ``wsum``, in place.

    ``acc``, ``wsum``: as in :func:`accumulate` (C-contiguous). ``geom``: int ``(n, 9)`` LR rows
    as in ``messages.GEOM_COLUMNS``. ``windows``: ``(n, WH, WW, C)`` HR windows, one per row;
    uint8, uint16 or float32 (any numeric dtype on the NumPy path). ``scale``: HR/LR factor >= 1.
    Tile i's HR core, ``(h, w) * scale`` pixels at ``(y0 - wy0, x0 - wx0) * scale`` inside its
    window, is added at ``(y0, x0) * scale`` with ``feather_weights(h * scale, w * scale,
    ramp_px)``: the same as :func:`accumulate` tile by tile. Under CuPy one ``blend.cu`` kernel
    adds the batch with float atomics, in no fixed order, so ``acc`` and ``wsum`` match the NumPy
    result to float32 rounding (relative 1e-5), not bit for bit.
    Raises :class:`ModelInputError` if a core is empty or outside its window or the canvas.
    """
    xp = array_module(acc)
    g = _check_tiles(acc, wsum, windows, geom, scale, xp)
    if xp.__name__ == "cupy" and windows.dtype.name in _SUFFIX:
        _accumulate_tiles_cuda(acc, wsum, windows, g, scale, ramp_px, xp)
        return
    for row, window in zip(g.tolist(), windows):
        _, y0, x0, h, w, wy0, wx0, _, _ = row
        oy, ox = (y0 - wy0) * scale, (x0 - wx0) * scale
        core = window[oy : oy + h * scale, ox : ox + w * scale]
        _accumulate_core(acc, wsum, core, feather_weights(h * scale, w * scale, ramp_px, xp), ramp_px,
                         y0 * scale, x0 * scale)


def _accumulate_core(acc: Any, wsum: Any, core: Any, weight: Any, ramp_px: int, y0: int, x0: int) -> None:
    """:func:`accumulate` of one tile core, bit for bit, in less time: where the feather weight is
    exactly 1 (inside the ramp) the core is added as it is, without the multiply and its temporaries;
    only the ramp's four bands take the weighted path."""
    h, w = weight.shape
    (top, bottom), (left, right) = _flat_span(h, ramp_px), _flat_span(w, ramp_px)
    if top >= bottom or left >= right:
        accumulate(acc, wsum, core, weight, y0, x0)
        return
    bands = ((0, top, 0, w), (bottom, h, 0, w), (top, bottom, 0, left), (top, bottom, right, w))
    for a, b, c, d in bands:
        if a < b and c < d:
            accumulate(acc, wsum, core[a:b, c:d], weight[a:b, c:d], y0 + a, x0 + c)
    inner = acc[y0 + top : y0 + bottom, x0 + left : x0 + right]
    array_module(acc).add(inner, core[top:bottom, left:right], out=inner, casting="unsafe")
    wsum[y0 + top : y0 + bottom, x0 + left : x0 + right] += 1


def _flat_span(length: int, ramp_px: int) -> tuple[int, int]:
    """``[start, stop)`` of the indices where :func:`feather_weights` is exactly 1 along an axis."""
    if ramp_px <= 1:
        return 0, length
    return ramp_px - 1, length - ramp_px + 1


_SUFFIX = {"uint8": "u8", "uint16": "u16", "float32": "f32"}  # dtype -> blend.cu kernel suffix


def _check_tiles(acc: Any, wsum: Any, windows: Any, geom: Any, scale: int, xp: ModuleType) -> np.ndarray:
    """``geom`` as a host int64 ``(n, 9)`` array, after checking it fits ``windows`` and the canvas."""
    _check_canvas(acc, wsum, "accumulate_tiles")
    return _tile_rows(acc.shape, windows, geom, scale, xp, "accumulate_tiles")


def _tile_rows(canvas_shape: tuple[int, ...], windows: Any, geom: Any, scale: int, xp: ModuleType,
               who: str) -> np.ndarray:
    """``geom`` as a host int64 ``(n, 9)`` array, after checking it fits ``windows`` and an ``(H, W, C)`` canvas."""
    g = np.asarray(xp.asnumpy(geom) if xp.__name__ == "cupy" else geom).astype(np.int64)
    if g.ndim != 2 or g.shape[1] != 9 or scale < 1:
        raise ModelInputError(f"{who}: expected (n, 9) geometry and scale >= 1, got {g.shape}, {scale}")
    if windows.ndim != 4 or windows.shape[0] != len(g) or windows.shape[3] != canvas_shape[2]:
        raise ModelInputError(
            f"{who}: windows must be ({len(g)}, WH, WW, {canvas_shape[2]}), got {tuple(windows.shape)}"
        )
    y0, x0, h, w, wy0, wx0 = (g[:, i] * scale for i in range(1, 7))  # HR core and window origin
    inside_window = (y0 >= wy0) & (x0 >= wx0) & (y0 - wy0 + h <= windows.shape[1]) & (x0 - wx0 + w <= windows.shape[2])
    inside_canvas = (y0 >= 0) & (x0 >= 0) & (y0 + h <= canvas_shape[0]) & (x0 + w <= canvas_shape[1])
    if not (inside_window & inside_canvas & (h >= 1) & (w >= 1)).all():
        raise ModelInputError(
            f"{who}: a tile core is empty or outside its {windows.shape[1]}x{windows.shape[2]} window "
            f"or the {canvas_shape[0]}x{canvas_shape[1]} canvas (scale {scale})"
        )
    return g


def _accumulate_tiles_cuda(acc: Any, wsum: Any, windows: Any, g: np.ndarray, scale: int, ramp_px: int,
                           cp: ModuleType) -> None:
    """One ``accumulate_*`` launch: a thread per (tile, HR core pixel)."""
    from vsr_stream.ops import _kernels  # CuPy-only code: imported on first GPU use

    if not (acc.flags.c_contiguous and wsum.flags.c_contiguous):
        raise ModelInputError("accumulate_tiles: the kernel writes acc and wsum in place; they must be C-contiguous")
    n, max_core_px = len(g), int((g[:, 3] * g[:, 4]).max(initial=0)) * scale * scale
    _, wh, ww, channels = windows.shape
    args = (cp.asarray(g.astype(np.int32)), np.int32(n), np.int32(scale), np.int32(max_core_px), np.int32(ramp_px),
            cp.ascontiguousarray(windows), np.int32(wh), np.int32(ww), np.int32(channels),
            acc, wsum, np.int32(acc.shape[1]))
    _kernels.launch(_kernels.function("blend", f"accumulate_{_SUFFIX[windows.dtype.name]}"), n * max_core_px, args)


def normalize(acc: Any, wsum: Any, dtype: Any) -> Any:
    """The blended frame: ``round_half_even(acc / wsum)`` clipped to ``dtype``'s range.

    ``acc``: float32 ``(H, W, C)``; ``wsum``: float32 ``(H, W)``; ``dtype``: an integer
    dtype (uint8 -> 0..255, uint16 -> 0..65535). Returns ``(H, W, C)`` of ``dtype``.
    Raises :class:`ModelInputError` (a ValueError) if any pixel has ``wsum <= 0``: a pixel
    no tile covered is a planning bug and must never pass silently. Under CuPy (uint8, uint16)
    the ``normalize_*`` kernel gives the same result bit for bit.
    """
    xp = array_module(acc)
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        raise ModelInputError(f"normalize: expected an integer output dtype, got {dtype}")
    _check_canvas(acc, wsum, "normalize")
    if xp.__name__ == "cupy" and dtype.name in ("uint8", "uint16"):
        out, uncovered = _normalize_cuda(acc, wsum, dtype, xp)
        _check_covered(uncovered, "normalize")
        return out
    _check_covered(int((~(wsum > 0)).sum()), "normalize")
    info = np.iinfo(dtype)
    out = xp.divide(acc, wsum[..., None])  # one float32 temporary, then in place: full frames are large
    xp.rint(out, out=out)
    xp.clip(out, info.min, info.max, out=out)
    return out.astype(dtype)


def _check_covered(uncovered: int, who: str) -> None:
    if uncovered:
        raise ModelInputError(
            f"{who}: {uncovered} pixel(s) have no tile weight (wsum <= 0); the tiles do not cover the frame"
        )


def _normalize_cuda(acc: Any, wsum: Any, dtype: np.dtype, cp: ModuleType) -> tuple[Any, int]:
    """The ``normalize_*`` kernel: the frame and the number of uncovered pixels it counted."""
    from vsr_stream.ops import _kernels  # CuPy-only code: imported on first GPU use

    h, w, channels = acc.shape
    out = cp.empty((h, w, channels), dtype=dtype)
    uncovered = cp.zeros(1, dtype=cp.uint32)
    args = (cp.ascontiguousarray(acc), cp.ascontiguousarray(wsum), np.int32(h * w), np.int32(channels), out, uncovered)
    _kernels.launch(_kernels.function("blend", f"normalize_{_SUFFIX[dtype.name]}"), h * w, args)
    return out, int(uncovered.get()[0])


Part = tuple[np.ndarray, Any]  # (rows: int (m, 9) LR GEOM_COLUMNS, HR windows (m, WH, WW, C)), as accumulate_tiles takes


def stitch_cores(parts: Sequence[Part], scale: int, ramp_px: int, shape: tuple[int, int, int], dtype: Any,
                 base: Any = None, behind: Sequence[Part] = ()) -> Any:
    """The blended HR frame of the tile cores ``parts``, as :func:`accumulate_tiles` of each part then
    :func:`normalize` give it, bit for bit, in a fraction of the time.

    A pixel only one core covers comes out of that blend as the core's own value (``v * w / w``
    rounds back to ``v``), so each core is pasted as it is, and only the bands where cores overlap
    are blended: each from every core that covers it, in order (``parts``, then ``behind``), with
    the same weights and the same float32 sums. ``shape``: ``(H, W, C)``; ``dtype``: an integer dtype.
    ``base``: None, or a frame of that shape and dtype the result starts from (copied, not
    changed): pixels no core of ``parts`` covers keep its values. ``behind``: cores already in
    ``base`` (the previous output's reused tiles): not pasted, but blended into any band they share
    with a core of ``parts``. Raises :class:`ModelInputError` for a core outside its window or the
    frame, or, without ``base``, a pixel no core covers (a planning bug, never passed silently).
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        raise ModelInputError(f"stitch_cores: expected an integer output dtype, got {dtype}")
    if base is not None and (tuple(base.shape) != tuple(shape) or base.dtype != dtype):
        raise ModelInputError(f"stitch_cores: the base frame is {tuple(base.shape)} {base.dtype}, the output "
                              f"{tuple(shape)} {dtype}")
    cores = _hr_cores(parts, True, shape, scale) + _hr_cores(behind, False, shape, scale)
    xp = array_module(cores[0][4]) if cores else np
    if base is None:
        _check_covered(_uncovered_px(parts, shape, scale), "stitch_cores")
        out = xp.empty(shape, dtype=dtype)
    else:
        out = base.copy()
    for y0, x0, h, w, core, pasted in cores:
        if pasted:
            out[y0 : y0 + h, x0 : x0 + w] = core
    for (by, bx, bh, bw), covering in _bands(cores):
        acc, wsum = xp.zeros((bh, bw, shape[2]), xp.float32), xp.zeros((bh, bw), xp.float32)
        for i in covering:  # in blend order; accumulate's sums without its checks (_tile_rows made them)
            y0, x0, h, w, core, _ = cores[i]
            top, left, bottom, right = max(y0, by), max(x0, bx), min(y0 + h, by + bh), min(x0 + w, bx + bw)
            weight = feather_weights(h, w, ramp_px, xp)[top - y0 : bottom - y0, left - x0 : right - x0]
            acc[top - by : bottom - by, left - bx : right - bx] += \
                core[top - y0 : bottom - y0, left - x0 : right - x0] * weight[..., None]
            wsum[top - by : bottom - by, left - bx : right - bx] += weight
        out[by : by + bh, bx : bx + bw] = normalize(acc, wsum, dtype)
    return out


def _hr_cores(parts: Sequence[Part], pasted: bool, shape: tuple[int, int, int], scale: int) -> list[tuple]:
    """``(y0, x0, h, w, core view, pasted)`` in HR pixels for every row of ``parts``, in order."""
    cores = []
    for rows, windows in parts:
        g = _tile_rows(shape, windows, rows, scale, array_module(windows), "stitch_cores")
        for (_, y0, x0, h, w, wy0, wx0, _, _), window in zip(g.tolist(), windows):
            oy, ox = (y0 - wy0) * scale, (x0 - wx0) * scale
            cores.append((y0 * scale, x0 * scale, h * scale, w * scale,
                          window[oy : oy + h * scale, ox : ox + w * scale], pasted))
    return cores


def _uncovered_px(parts: Sequence[Part], shape: tuple[int, int, int], scale: int) -> int:
    """HR pixels no LR core of ``parts`` covers (counted on the LR grid: every core is whole LR pixels)."""
    covered = np.zeros((shape[0] // scale, shape[1] // scale), dtype=bool)
    for rows, _ in parts:
        for y0, x0, h, w in np.asarray(rows)[:, 1:5].tolist():
            covered[y0 : y0 + h, x0 : x0 + w] = True
    return int(covered.size - covered.sum()) * scale * scale


def _bands(cores: list[tuple]) -> list[tuple[tuple[int, int, int, int], list[int]]]:
    """Every non-empty overlap ``(y, x, h, w)`` of two cores of which at least one is pasted, with the
    indices (ascending: blend order) of all the cores that share a pixel with it."""
    if len(cores) < 2:
        return []
    rects = np.array([c[:4] for c in cores], dtype=np.int64)
    pasted = np.array([c[5] for c in cores], dtype=bool)
    box, meet = intersections(rects, rects)
    meet &= np.triu(np.ones(meet.shape, dtype=bool), 1) & (pasted[:, None] | pasted[None, :])
    top, left, bottom, right = box[meet].T
    bands = np.stack([top, left, bottom - top, right - left], axis=1)
    _, hits = intersections(bands, rects)
    return [(tuple(band), np.flatnonzero(hit).tolist()) for band, hit in zip(bands.tolist(), hits)]
