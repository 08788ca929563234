"""What the pipeline spends per output pixel: multiply-adds of every branch over the tile
windows it runs on (overlap and its own context included), from the same tile plan, TVAT
classes and per-branch windows as the pipeline's classify stage.

    cost = pipeline_cost([lr1, lr2], cfg)
    print(cost.macs_per_hr_px, cost.class_shares)

Each branch's MACs per LR window pixel are measured once with
:func:`vsr_stream.models.macs.macs_per_output_pixel` (convolutions are linear in area, so
one 64x64 probe gives the per-pixel rate); a window of ``wh x ww`` LR pixels costs that rate
times its area; tiles merged into one window (``merge_px``) count that window once. A learned
tile classifier (``classify.classifier``) counts its own MACs on every tile's core. Tile plans
and classes come from the classify stage's own functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from vsr_stream.config import PipelineConfig
from vsr_stream.messages import GEOM_COLUMNS
from vsr_stream.ops.merge import merge_groups, union_rect
from vsr_stream.stages.classify import branch_context_px, tile_classes, tile_plan, with_context

if TYPE_CHECKING:
    from vsr_stream.models.classifier import TileClassifier

_WH, _WW = GEOM_COLUMNS.index("wh"), GEOM_COLUMNS.index("ww")


@dataclass(frozen=True)
class PipelineCost:
    """Multiply-adds and tile counts of the pipeline over some frames."""

    macs: float
    hr_pixels: int
    tiles_per_class: tuple[int, ...]
    branch_macs_per_lr_px: tuple[float, ...]
    classifier_macs: float = 0.0  # included in ``macs``

    @property
    def macs_per_hr_px(self) -> float:
        """Average multiply-adds per output (HR) pixel, all three channels."""
        return self.macs / self.hr_pixels if self.hr_pixels else 0.0

    @property
    def class_shares(self) -> tuple[float, ...]:
        total = sum(self.tiles_per_class)
        return tuple(n / total if total else 0.0 for n in self.tiles_per_class)

    def to_dict(self) -> dict[str, object]:
        return {"macs_per_hr_px": self.macs_per_hr_px, "tiles_per_class": list(self.tiles_per_class),
                "class_shares": list(self.class_shares), "branch_macs_per_lr_px": list(self.branch_macs_per_lr_px),
                "classifier_macs_per_hr_px": self.classifier_macs / self.hr_pixels if self.hr_pixels else 0.0}

    def line(self) -> str:
        shares = " / ".join(f"{s:.0%}" for s in self.class_shares)
        return f"{self.macs_per_hr_px:,.0f} MACs per HR pixel; tiles per class {shares}"


def branch_macs_per_lr_px(cfg: PipelineConfig) -> tuple[float, ...]:
    """MACs per LR input pixel of each configured branch at ``cfg.scale``."""
    from vsr_stream.models.inference import build_branch_module
    from vsr_stream.models.macs import macs_per_output_pixel

    rates = []
    for branch in cfg.upscale.branches:
        net = build_branch_module(branch, cfg.scale, allow_random=True)
        rates.append(macs_per_output_pixel(net, cfg.scale) * cfg.scale * cfg.scale)
    return tuple(rates)


def classifier_macs(geom: np.ndarray, cfg: PipelineConfig) -> float:
    """MACs of ``cfg``'s learned tile classifier over the cores of ``geom`` (0 without one)."""
    if cfg.classify.classifier is None or not len(geom):
        return 0.0
    from vsr_stream.models.classifier import load_classifier

    # every core of a frame has one shape
    return _macs_per_core(load_classifier(cfg.classify.classifier), int(geom[0, 3]), int(geom[0, 4])) * len(geom)


@lru_cache(maxsize=16)
def _macs_per_core(classifier: TileClassifier, h: int, w: int) -> float:
    """MACs of a tile classifier on one ``h x w`` core (one under MIN_TILE_PX is read padded to it)."""
    import torch

    from vsr_stream.models.classifier import MIN_TILE_PX
    from vsr_stream.models.macs import count_macs

    return float(count_macs(classifier, torch.zeros(1, 3, max(MIN_TILE_PX, h), max(MIN_TILE_PX, w))))


def frame_classes(frame: np.ndarray, cfg: PipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Tile plan and class per tile of an RGB uint8 ``frame``, by the classify stage's own functions."""
    geom = tile_plan(frame.shape[0], frame.shape[1], cfg.tiling)
    return geom, tile_classes(frame, geom, cfg.classify)


def window_area(geom: np.ndarray, merge_px: int) -> int:
    """LR pixels of the windows one class's tiles ``geom`` (of one frame) run on: each tile's
    window, or with ``merge_px`` each merged window once, grouped as the fused loop groups them."""
    if merge_px <= 0:
        return int((geom[:, _WH].astype(np.int64) * geom[:, _WW]).sum())
    return sum(h * w for _, _, h, w in (union_rect(geom[g]) for g in merge_groups(geom, merge_px)))


def pipeline_cost(frames: Iterable[np.ndarray], cfg: PipelineConfig,
                  rates: tuple[float, ...] | None = None) -> PipelineCost:
    """Total cost of upscaling RGB (H, W, 3) or grey (H, W) uint8 ``frames`` with ``cfg``."""
    rates = branch_macs_per_lr_px(cfg) if rates is None else rates
    counts = np.zeros(len(rates), dtype=np.int64)
    contexts = branch_context_px(cfg)
    macs, hr_pixels, classifying = 0.0, 0, 0.0
    for frame in frames:
        rgb = np.repeat(frame[:, :, None], 3, axis=2) if frame.ndim == 2 else frame
        geom, classes = frame_classes(rgb, cfg)
        classifying += classifier_macs(geom, cfg)
        for k, (rate, branch, context_px) in enumerate(zip(rates, cfg.upscale.branches, contexts)):
            mine = with_context(geom[classes == k], rgb.shape[0], rgb.shape[1], cfg.tiling, context_px)
            counts[k] += len(mine)
            macs += rate * float(window_area(mine, branch.merge_px))
        hr_pixels += rgb.shape[0] * rgb.shape[1] * cfg.scale * cfg.scale
    return PipelineCost(macs + classifying, hr_pixels, tuple(int(c) for c in counts), tuple(rates), classifying)
