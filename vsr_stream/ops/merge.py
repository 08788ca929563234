"""Merged windows: adjacent tiles of one class go through the network as one larger window.

Routing and temporal reuse want small tiles (a flat patch, an unchanged patch), while the
network wants large windows: every window carries ``context_px`` of extra pixels on each side
and every call a fixed cost, so 64-px tiles cost 1.5x and 32-px tiles 3.8x the whole frame
(docs/performance.md). Merging decouples the two: tiles are classified and reused at their own
size, and the tiles of one class that touch are cut as the rectangle their windows cover, run
once, and each tile's window is cropped back out of the result.

Exactness: a tile's core lies ``context_px`` (>= the network's receptive radius) inside its own
window, or at the frame edge, and its window lies inside the merged rectangle, so the core's
upscaled pixels are the whole-frame ones either way; only the parts of each window outside its
core (which stitching never reads) differ from running the tile alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vsr_stream.messages import GEOM_COLUMNS
from vsr_stream.ops import array_module

_Y0, _X0, _H, _W, _WY, _WX, _WH, _WW = (GEOM_COLUMNS.index(c) for c in ("y0", "x0", "h", "w", "wy0", "wx0", "wh", "ww"))


def merge_groups(geom: np.ndarray, max_px: int) -> list[np.ndarray]:
    """Groups of ``geom`` rows (one frame's tiles, int ``(n, 9)``) to run as one window each.

    Each group is an int64 array of row indices; every row is in exactly one group. A group's
    cores tile a rectangle without a hole (so it can be stitched as one tile), its windows
    cover the rectangle they span (so it can be cut from the frame or pasted from the windows),
    and that window rectangle is at most ``max_px`` LR pixels a side unless the group is a single
    tile. Greedy: runs along each tile row of cores that touch or overlap, then runs of the same
    horizontal extent stacked downwards. ``max_px <= 0``: every tile alone.
    """
    n = len(geom)
    if max_px <= 0 or n < 2:
        return [np.array([i], dtype=np.int64) for i in range(n)]
    order = np.lexsort((geom[:, _X0], geom[:, _Y0]))
    runs: list[list[int]] = []
    for i in order.tolist():
        last = runs[-1] if runs else None
        if last is not None and _extends_run(geom, last, i, max_px):
            last.append(i)
        else:
            runs.append([i])
    groups: list[list[int]] = []
    open_by_span: dict[tuple[int, int], list[int]] = {}  # the group a run of that x-extent may extend
    for run in runs:
        span = (int(geom[run[0], _X0]), int(geom[run[-1], _X0] + geom[run[-1], _W]))
        group = open_by_span.get(span)
        if group is not None and _extends_down(geom, group, run, max_px):
            group.extend(run)
        else:
            group = list(run)
            groups.append(group)
            open_by_span[span] = group
    return [np.array(g, dtype=np.int64) for g in groups]


def merged_rows(geom: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """One ``GEOM_COLUMNS`` row per group of :func:`merge_groups`: the union of its cores as the
    core and :func:`union_rect` as the window; ``tile_id`` is the group's first tile's. int32 ``(g, 9)``."""
    out = np.empty((len(groups), geom.shape[1]), dtype=np.int32)
    for k, g in enumerate(groups):
        rows = geom[g]
        y0, x0 = rows[:, _Y0].min(), rows[:, _X0].min()
        out[k, :_WY] = rows[0, 0], y0, x0, (rows[:, _Y0] + rows[:, _H]).max() - y0, (rows[:, _X0] + rows[:, _W]).max() - x0
        out[k, _WY:] = union_rect(rows)
    return out


def union_rect(geom: np.ndarray) -> tuple[int, int, int, int]:
    """``(y, x, h, w)``: the bounding rectangle of the windows of ``geom`` rows (LR pixels)."""
    y, x = int(geom[:, _WY].min()), int(geom[:, _WX].min())
    return y, x, int((geom[:, _WY] + geom[:, _WH]).max()) - y, int((geom[:, _WX] + geom[:, _WW]).max()) - x


def window_batches(geom: np.ndarray, max_px: int, max_batch: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """What to run for one class's tiles ``geom`` of one frame: ``(rows, groups)`` per network call.

    ``rows``: int32 ``(m, 9)``, 1 <= m <= ``max_batch``, the :func:`merged_rows` of ``groups``
    (a tile that merged with none is its own row), all of one window shape, so they batch;
    ``groups``: the ``geom`` indices of each row's tiles. Unmerged tiles come first, in ``geom``
    order; then merged windows by shape.
    """
    groups = merge_groups(geom, max_px)
    by_shape: dict[tuple[int, int], list[np.ndarray]] = {}
    for g in groups:  # singles share the frame's window shape; a merged window's is its own
        by_shape.setdefault(union_rect(geom[g])[2:] if len(g) > 1 else (-1, -1), []).append(g)
    out = []
    for members in by_shape.values():
        for start in range(0, len(members), max_batch):
            chunk = members[start:start + max_batch]
            out.append((merged_rows(geom, chunk), chunk))
    return out


def upscale_merged(run: Callable[[Any], Any], windows: Any, geom: np.ndarray, max_px: int,
                   max_batch: int, scale: int) -> Any:
    """HR windows of ``windows`` (``(n, wh, ww, C)``, the LR windows of ``geom`` rows of one frame)
    as ``run`` (LR batch -> HR batch) gives them, calling it on :func:`window_batches`' windows.

    Returns ``(n, wh*scale, ww*scale, C)`` in ``windows``' array module; rows in ``geom`` order.
    A merged window is pasted from its tiles' windows and each tile's window cropped from its
    output. With nothing merged this is ``run`` over batches of ``windows``, nothing copied.
    """
    batches = window_batches(geom, max_px, max_batch)
    if all(len(g) == 1 for _, groups in batches for g in groups):
        return _batched(run, windows, max_batch)
    xp = array_module(windows)
    n, wh, ww, channels = windows.shape
    out = xp.empty((n, wh * scale, ww * scale, channels), dtype=windows.dtype)
    for rows, groups in batches:
        if all(len(g) == 1 for g in groups):
            index = xp.asarray(np.concatenate(groups))
            out[index] = run(windows[index])
            continue
        canvases = xp.empty((len(rows), int(rows[0, _WH]), int(rows[0, _WW]), channels), dtype=windows.dtype)
        for canvas, row, g in zip(canvases, rows, groups):
            _paste(canvas, windows, geom, g, row)
        for merged, row, g in zip(run(canvases), rows, groups):
            for i in g.tolist():
                oy, ox = (int(geom[i, _WY]) - int(row[_WY])) * scale, (int(geom[i, _WX]) - int(row[_WX])) * scale
                out[i] = merged[oy:oy + wh * scale, ox:ox + ww * scale]
    return out


def _extends_run(geom: np.ndarray, run: list[int], i: int, max_px: int) -> bool:
    """Tile ``i`` continues ``run`` to the right: same tile row, cores touching, windows not too wide."""
    first, last, row = geom[run[0]], geom[run[-1]], geom[i]
    if row[_Y0] != first[_Y0] or row[_H] != first[_H] or row[_WY] != first[_WY] or row[_WH] != first[_WH]:
        return False
    right = int(last[_WX] + last[_WW])
    return row[_X0] <= last[_X0] + last[_W] and max(right, int(row[_WX] + row[_WW])) - int(first[_WX]) <= max_px


def _extends_down(geom: np.ndarray, group: list[int], run: list[int], max_px: int) -> bool:
    """``run`` (the same core x-extent as ``group``) continues ``group`` downwards: cores touching,
    windows not too tall."""
    core_bottom = int((geom[group, _Y0] + geom[group, _H]).max())
    top = int(geom[group, _WY].min())
    first = geom[run[0]]
    return first[_Y0] <= core_bottom and int(first[_WY] + first[_WH]) - top <= max_px


def _paste(canvas: Any, windows: Any, geom: np.ndarray, group: np.ndarray, row: np.ndarray) -> None:
    """Fill ``canvas`` (the window of merged ``row``) from the windows of ``group``, which cover it."""
    _, wh, ww, _ = windows.shape
    for i in group.tolist():
        oy, ox = int(geom[i, _WY]) - int(row[_WY]), int(geom[i, _WX]) - int(row[_WX])
        canvas[oy:oy + wh, ox:ox + ww] = windows[i]


def _batched(run: Callable[[Any], Any], windows: Any, max_batch: int) -> Any:
    parts = [run(windows[i:i + max_batch]) for i in range(0, len(windows), max_batch)]
    return parts[0] if len(parts) == 1 else array_module(parts[0]).concatenate(parts)
