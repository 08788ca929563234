"""Luma-only branches: an exact colour round trip, and the network only touches Y."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.models import build_model
from vsr_stream.models.macs import macs_per_output_pixel
from vsr_stream.models.ychannel import YChannel


class _BicubicY(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False)


def test_bicubic_luma_gives_bicubic_rgb():
    """Colour conversion and bicubic are affine, so bicubic on Y + bicubic chroma = bicubic RGB."""
    x = torch.rand(2, 3, 11, 14)
    out = YChannel(_BicubicY(3), 3)(x)
    ref = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=0)


def test_network_changes_only_luma():
    x = torch.rand(1, 3, 9, 9)
    plain = YChannel(_BicubicY(2), 2)(x)
    brighter = YChannel(nn.Sequential(_BicubicY(2), nn.ConstantPad1d(0, 0)), 2)
    brighter.net.add_module("shift", _Add(0.1))
    delta = brighter(x) - plain
    # +0.1 on Y alone is +0.1 * 255/219 on each of R, G and B (grey), chroma untouched.
    torch.testing.assert_close(delta, torch.full_like(delta, 0.1 * 255 / 219), atol=1e-5, rtol=0)


class _Add(nn.Module):
    def __init__(self, v: float) -> None:
        super().__init__()
        self.v = v

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t + self.v


def test_y_variant_is_cheaper_than_rgb():
    rgb = macs_per_output_pixel(build_model("fsrcnn-ps-56", 4, allow_random=True), 4)
    y = macs_per_output_pixel(build_model("fsrcnn-ps-56-y", 4, allow_random=True), 4)
    assert y < 0.75 * rgb
