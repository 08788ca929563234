"""Tile-size sweep: what overlap and small tiles cost one branch, measured (``vsr-stream bench --tile-sweep``).

For each tile size the frame is planned as the pipeline plans it (:func:`tile_plan`), its windows
cut (:func:`cut_windows`) and run through the branch network (:class:`BranchModel`, so the
pipeline's precision, layout and threads) in batches of each size; the whole frame through the
same network is the baseline. Reported per setting: milliseconds per frame (median of
``repeats``), the work overhead of the windows (window pixels / frame pixels, which context and
overlap inflate), and the time relative to the whole frame. The fastest setting per model is the
one to configure; docs/performance.md records the numbers behind the shipped presets.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from vsr_stream.config import BranchConfig, TilingConfig
from vsr_stream.media.synth import picture
from vsr_stream.models.inference import BranchModel
from vsr_stream.stages.classify import cut_windows, tile_plan

TILE_SIZES_PX = (32, 48, 64, 96, 128, 192)
BATCHES = (1, 4, 16, 64)


def window_overhead(geom: np.ndarray, h: int, w: int) -> float:
    """LR pixels the network computes (all windows) per LR pixel of the frame."""
    return float(len(geom) * int(geom[0, 7]) * int(geom[0, 8])) / (h * w)


def _median_s(fn: Any, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sweep(branch: BranchConfig, scale: int, size: tuple[int, int], *, overlap_px: int, context_px: int,
          tile_sizes: tuple[int, ...] = TILE_SIZES_PX, batches: tuple[int, ...] = BATCHES, repeats: int = 3,
          allow_random: bool = False) -> dict[str, Any]:
    """Measure ``branch`` on one ``size`` (W, H) LR frame, whole and tiled; see the module docstring."""
    w, h = size
    model = BranchModel(branch, scale, allow_random)
    frame = picture(0, h, w)
    whole_s = _median_s(lambda: model.upscale(frame[None]), repeats)
    rows = []
    for tile_px in tile_sizes:
        if tile_px <= overlap_px:
            continue
        geom = tile_plan(h, w, TilingConfig(tile_px=tile_px, overlap_px=overlap_px, context_px=context_px))
        windows = cut_windows(frame, geom)
        for batch in batches:
            if batch > len(windows) and batch != batches[0]:
                continue  # a batch larger than the frame's tiles measures nothing new
            seconds = _median_s(lambda: [model.upscale(windows[i:i + batch]) for i in range(0, len(windows), batch)],
                                repeats)
            rows.append({"tile_px": tile_px, "batch": batch, "tiles": len(windows),
                         "window_hw": [int(geom[0, 7]), int(geom[0, 8])],
                         "overhead": window_overhead(geom, h, w), "ms_per_frame": seconds * 1000,
                         "vs_whole_frame": seconds / whole_s})
    best = min(rows, key=lambda r: r["ms_per_frame"]) if rows else None
    return {"model": branch.model, "scale": scale, "size": f"{w}x{h}", "overlap_px": overlap_px,
            "context_px": context_px, "precision": getattr(model, "precision", branch.precision),
            "whole_frame_ms": whole_s * 1000, "rows": rows, "best": best}


def sweep_table(result: dict[str, Any]) -> str:
    """The sweep as a plain-text table."""
    lines = [f"{result['model']} x{result['scale']} on {result['size']} (overlap {result['overlap_px']}, "
             f"context {result['context_px']}, {result['precision']}): whole frame "
             f"{result['whole_frame_ms']:.1f} ms",
             f"{'tile':>5} {'batch':>5} {'tiles':>5} {'window':>9} {'overhead':>8} {'ms/frame':>9} {'vs whole':>8}"]
    for r in result["rows"]:
        window = "x".join(map(str, r["window_hw"]))
        lines.append(f"{r['tile_px']:>5} {r['batch']:>5} {r['tiles']:>5} {window:>9} {r['overhead']:>8.2f} "
                     f"{r['ms_per_frame']:>9.1f} {r['vs_whole_frame']:>8.2f}")
    return "\n".join(lines)
