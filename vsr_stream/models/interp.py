"""Interpolation upscalers without weights: the baselines and the cheapest route for flat tiles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.models.registry import ModelDescriptor

SCALES = (2, 3, 4)


class Bicubic(nn.Module):
    """Bicubic ``(N, C, H, W)`` -> ``(N, C, H*scale, W*scale)``, same dtype; no clamping.

    PyTorch's kernel (a = -0.75), half-pixel centres (``align_corners=False``), edge pixels
    replicated. HR pixel o samples LR position (o + 0.5) / scale - 0.5 with taps
    floor(x) - 1 .. floor(x) + 2, so a tile needs 2 LR pixels of context. It overshoots
    [0, 1] at sharp edges; the caller clamps.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Nearest(nn.Module):
    """Nearest neighbour ``(N, C, H, W)`` -> ``(N, C, H*scale, W*scale)``: each pixel repeated scale x scale."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


DESCRIPTORS = (
    ModelDescriptor(
        name="bicubic",
        scales=SCALES,
        builder=Bicubic,
        learned=False,
        supports_half=True,
        receptive_radius_px=2,
        min_size_px=1,
        description="bicubic interpolation (a = -0.75, half-pixel centres)",
        family="interpolation",
    ),
    ModelDescriptor(
        name="nearest",
        scales=SCALES,
        builder=Nearest,
        learned=False,
        supports_half=True,
        receptive_radius_px=0,
        min_size_px=1,
        description="nearest-neighbour pixel repetition",
        family="interpolation",
    ),
)
