"""From measured runs to the benchmark's numbers: fps, per-stage time, the ideal fps, the
branch stage's multiply-adds per second, and PSNR of an output video against the HR frames.

Ideal fps = 1 / (sum over stages of busy seconds per frame): what the run would reach if the
stages' work were perfectly overlapped on one core's worth of time each frame; efficiency =
pipeline fps / ideal fps. Branch work: MACs of one tile window of the class's shape
(:mod:`vsr_stream.models.macs`) per window pixel, times the LR pixels of the windows that branch
ran (merged windows included), over its busy seconds.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsr_stream.config import DecodeConfig, PipelineConfig, TilingConfig
from vsr_stream.errors import ModelInputError
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.messages import GEOM_COLUMNS
from vsr_stream.media.source import open_source
from vsr_stream.models.inference import build_branch_module
from vsr_stream.models.macs import count_macs
from vsr_stream.quality.metrics import psnr_y
from vsr_stream.stages.classify import tile_plan


def median_run(runs: list[dict[str, Any]], seconds: list[float]) -> dict[str, Any]:
    """The run whose time is the (lower) median of ``seconds`` (one per run)."""
    order = sorted(range(len(runs)), key=seconds.__getitem__)
    return runs[order[(len(runs) - 1) // 2]]


def stage_busy_s(stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Busy seconds by stage, the workers of class k summed as ``upscale<k>``; stages that
    report no ``busy_s`` are left out. A stage whose calls ran ``calls_at_once`` side by side
    (the fused loop's network threads) counts its summed busy time divided by that: the time the
    stage takes when its calls overlap, on the cores they share."""
    out: dict[str, float] = {}
    for name, stats in stages.items():
        if "busy_s" in stats:
            key = f"upscale{stats['cls']}" if "cls" in stats else name
            out[key] = out.get(key, 0.0) + float(stats["busy_s"]) / max(1, int(stats.get("calls_at_once", 1)))
    return out


def branch_tiles(stages: dict[str, dict[str, Any]], n_classes: int, field: str = "tiles") -> list[int]:
    """Tiles each class's branch workers ran (reused tiles are not run), or with ``field =
    "window_px"`` the LR pixels their windows held (merged windows count once)."""
    tiles = [0] * n_classes
    for stats in stages.values():
        if "cls" in stats:
            tiles[int(stats["cls"])] += int(stats.get(field, 0))
    return tiles


def window_hw(lr_hw: tuple[int, int], tiling: TilingConfig) -> tuple[int, int]:
    """The (h, w) of every tile window of an ``lr_hw`` frame (all windows of a frame share it)."""
    geom = tile_plan(lr_hw[0], lr_hw[1], tiling)
    return int(geom[0, GEOM_COLUMNS.index("wh")]), int(geom[0, GEOM_COLUMNS.index("ww")])


def window_macs(cfg: PipelineConfig, hw: tuple[int, int]) -> list[int]:
    """MACs of one ``hw`` window through each branch's network (self-ensemble included)."""
    x = torch.zeros(1, 3, *hw)
    return [count_macs(build_branch_module(b, cfg.scale, cfg.upscale.allow_random_weights), x)
            for b in cfg.upscale.branches]


def branch_work(macs_per_window: list[int], tiles: list[int], busy: dict[str, float],
                window_px: list[int] | None = None, window_area: int | None = None) -> list[dict[str, Any]]:
    """Per class: MACs per window, tiles run, MACs done, busy seconds and achieved 10^9 MACs per
    second (None when the branch was never busy). MACs done: per window times tiles, or, given the
    LR pixels the branch ran (``window_px``, which merged windows make fewer than tiles times
    ``window_area``), per window pixel times those pixels."""
    rows = []
    for k, (macs, n) in enumerate(zip(macs_per_window, tiles)):
        busy_s = busy.get(f"upscale{k}", 0.0)
        px = window_px[k] if window_px else 0
        done = macs * px / window_area if px and window_area else macs * n
        rows.append({"cls": k, "macs_per_window": macs, "tiles": n, "window_px": px or None, "macs": done,
                     "busy_s": busy_s, "gmacs_per_s": done / busy_s / 1e9 if busy_s > 0 else None})
    return rows


def branch_rate_gmacs(rows: list[dict[str, Any]]) -> float | None:
    """All branches together: their MACs over their busy seconds, 10^9 per second."""
    busy = sum(r["busy_s"] for r in rows)
    return sum(r["macs"] for r in rows) / busy / 1e9 if busy > 0 else None


def stage_times(run: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Milliseconds per frame of every stage of one pipeline run (busy time from its report,
    or measured alone where the report has none), and the names measured alone."""
    frames = max(int(run["report"]["frames"]), 1)
    seconds = {**stage_busy_s(run["report"]["stages"]), **run["alone_s"]}
    return {name: 1000 * seconds[name] / frames for name in sorted(seconds, key=_flow_order)}, sorted(run["alone_s"])


def _flow_order(stage: str) -> tuple[int, int, str]:
    """Sort key putting stages in the order frames flow through them (unknown names last)."""
    flow = ("decode", "classify", "upscale", "stitch", "encode")
    base = stage.rstrip("0123456789") if stage.startswith("upscale") else stage
    return (flow.index(base) if base in flow else len(flow), len(stage), stage)


def ideal_fps(ms_per_frame: dict[str, float]) -> float | None:
    """1 / the sum of every stage's per-frame time (None if nothing was timed)."""
    total_s = sum(ms_per_frame.values()) / 1000
    return 1 / total_s if total_s > 0 else None


def fps(frames: int, seconds: list[float]) -> float:
    """Frames per second at the median of ``seconds``."""
    return frames / statistics.median(seconds)


def video_psnr_y(path: str | Path, hr_path: str | Path, shave: int) -> float:
    """Mean over frames of the Y-PSNR (BT.601, ``shave`` px cut from each border, dB) of the
    decoded video ``path`` against the HR frames in ``hr_path`` ((n, H, W, 3) uint8 .npy).
    Raises ModelInputError if frame counts or sizes differ, SourceError if it cannot be read."""
    hr = np.load(hr_path, mmap_mode="r")
    scores: list[float] = []
    with open_source(str(path), DecodeConfig()) as source:
        for item in source.items():
            if isinstance(item, VideoFrameItem):
                if len(scores) == len(hr):
                    raise ModelInputError(f"{path} has more frames than the {len(hr)} HR frames")
                scores.append(psnr_y(item.array, hr[len(scores)], shave))
    if len(scores) != len(hr):
        raise ModelInputError(f"{path} has {len(scores)} frames, the HR clip {len(hr)}")
    return float(np.mean(scores))
