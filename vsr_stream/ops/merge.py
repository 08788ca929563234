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

from vsr_stream.ops import array_module

_WY, _WX, _WH, _WW = 5, 6, 7, 8  # window columns of messages.GEOM_COLUMNS


def merge_groups(geom: np.ndarray, max_px: int) -> list[np.ndarray]:
    """Groups of ``geom`` rows (one frame's tiles, int ``(n, 9)``) to run as one window each.

    Each group is an int64 array of row indices; every row is in exactly one group. A group's
    windows cover the rectangle they span without a hole (so it can be cut from the frame or
    pasted from the windows), and the rectangle is at most ``max_px`` LR pixels a side unless
    the group is a single tile. Greedy: runs along each tile row of windows that touch or
    overlap, then runs of the same horizontal extent stacked downwards. ``max_px <= 0``: every
    tile alone.
    """
    n = len(geom)
    if max_px <= 0 or n < 2:
        return [np.array([i], dtype=np.int64) for i in range(n)]
    order = np.lexsort((geom[:, _WX], geom[:, _WY], geom[:, 1]))
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
        span = (int(geom[run[0], _WX]), int(geom[run[-1], _WX] + geom[run[-1], _WW]))
        group = open_by_span.get(span)
        if group is not None and _extends_down(geom, group, run, max_px):
            group.extend(run)
        else:
            group = list(run)
            groups.append(group)
            open_by_span[span] = group
    return [np.array(g, dtype=np.int64) for g in groups]


def union_rect(geom: np.ndarray) -> tuple[int, int, int, int]:
    """``(y, x, h, w)``: the bounding rectangle of the windows of ``geom`` rows (LR pixels)."""
    y, x = int(geom[:, _WY].min()), int(geom[:, _WX].min())
    return y, x, int((geom[:, _WY] + geom[:, _WH]).max()) - y, int((geom[:, _WX] + geom[:, _WW]).max()) - x


def upscale_merged(run: Callable[[Any], Any], windows: Any, geom: np.ndarray, max_px: int,
                   max_batch: int, scale: int) -> Any:
    """HR windows of ``windows`` (``(n, wh, ww, C)``, the LR windows of ``geom`` rows of one frame)
    as ``run`` (LR batch -> HR batch) gives them, with :func:`merge_groups`' groups each run once.

    Returns ``(n, wh*scale, ww*scale, C)`` in ``windows``' array module; rows in ``geom`` order.
    Batches hold at most ``max_batch`` windows of one shape. With no group of two or more this is
    ``run`` over batches of ``windows``, nothing copied.
    """
    groups = merge_groups(geom, max_px)
    if all(len(g) == 1 for g in groups):
        return _batched(run, windows, max_batch)
    xp = array_module(windows)
    n, wh, ww, channels = windows.shape
    out = xp.empty((n, wh * scale, ww * scale, channels), dtype=windows.dtype)
    singles = np.concatenate([g for g in groups if len(g) == 1] or [np.zeros(0, np.int64)])
    if len(singles):
        out[xp.asarray(singles)] = _batched(run, windows[xp.asarray(singles)], max_batch)
    by_shape: dict[tuple[int, int], list[tuple[np.ndarray, tuple[int, int, int, int]]]] = {}
    for g in groups:
        if len(g) > 1:
            rect = union_rect(geom[g])
            by_shape.setdefault(rect[2:], []).append((g, rect))
    for (h, w), members in by_shape.items():
        for start in range(0, len(members), max_batch):
            chunk = members[start:start + max_batch]
            canvases = xp.empty((len(chunk), h, w, channels), dtype=windows.dtype)
            for canvas, (g, rect) in zip(canvases, chunk):
                _paste(canvas, windows, geom, g, rect)
            hr = run(canvases)
            for merged, (g, rect) in zip(hr, chunk):
                for i in g.tolist():
                    oy, ox = (int(geom[i, _WY]) - rect[0]) * scale, (int(geom[i, _WX]) - rect[1]) * scale
                    out[i] = merged[oy:oy + wh * scale, ox:ox + ww * scale]
    return out


def _extends_run(geom: np.ndarray, run: list[int], i: int, max_px: int) -> bool:
    """Tile ``i`` continues ``run`` to the right: same tile row and window rows, touching, not too wide."""
    first, last = geom[run[0]], geom[run[-1]]
    row = geom[i]
    if row[1] != first[1] or row[_WY] != first[_WY] or row[_WH] != first[_WH]:
        return False
    right = int(last[_WX] + last[_WW])
    return row[_WX] <= right and max(right, int(row[_WX] + row[_WW])) - int(first[_WX]) <= max_px


def _extends_down(geom: np.ndarray, group: list[int], run: list[int], max_px: int) -> bool:
    """``run`` (the same x-extent as ``group``) continues ``group`` downwards: touching, not too tall."""
    top = int(geom[group, _WY].min())
    bottom = int((geom[group, _WY] + geom[group, _WH]).max())
    first = geom[run[0]]
    return first[_WY] <= bottom and int(first[_WY] + first[_WH]) - top <= max_px


def _paste(canvas: Any, windows: Any, geom: np.ndarray, group: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    """Fill ``canvas`` (the rectangle ``rect`` of the frame) from the windows of ``group``, which cover it."""
    _, wh, ww, _ = windows.shape
    for i in group.tolist():
        oy, ox = int(geom[i, _WY]) - rect[0], int(geom[i, _WX]) - rect[1]
        canvas[oy:oy + wh, ox:ox + ww] = windows[i]


def _batched(run: Callable[[Any], Any], windows: Any, max_batch: int) -> Any:
    parts = [run(windows[i:i + max_batch]) for i in range(0, len(windows), max_batch)]
    return parts[0] if len(parts) == 1 else array_module(parts[0]).concatenate(parts)
