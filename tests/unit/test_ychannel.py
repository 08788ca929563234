"""Luma-only branches: an exact colour round trip, and the network only touches Y."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.models import build_model, interp, ychannel
from vsr_stream.models.macs import count_macs, macs_per_output_pixel
from vsr_stream.models.ychannel import YChannel, luma


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


def test_chroma_guided_net_loads_the_luma_net_as_the_same_function(tmp_path):
    from vsr_stream.models import load_matching_weights, save_weights

    torch.manual_seed(0)
    luma_only = build_model("fsrcnn-ps-56-m9-y", 4, allow_random=True)
    save_weights(luma_only, tmp_path / "w.safetensors")
    guided = build_model("fsrcnn-ps-56-m9-yc", 4, allow_random=True)
    load_matching_weights(guided, tmp_path / "w.safetensors")
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        torch.testing.assert_close(guided(x), luma_only(x), atol=0, rtol=0)
    # The guide is the only addition: 2 chroma channels x 56 features per LR pixel, and the 2 x 3
    # multiply-adds per LR pixel that compute that chroma.
    extra = macs_per_output_pixel(guided, 4) - macs_per_output_pixel(luma_only, 4)
    assert extra == (2 * 56 + 2 * 3) / 4**2


def test_chroma_guide_lets_the_lr_chroma_shape_the_luma():
    torch.manual_seed(1)
    guided = build_model("fsrcnn-ps-56-m12-yc", 3, allow_random=True)
    x = torch.rand(1, 3, 12, 12)
    colour_shift = torch.tensor([0.1, -0.1, 0.05]).view(1, 3, 1, 1)
    y_shift = luma(colour_shift).item()
    recoloured = x + colour_shift - y_shift * 255 / 219  # the same Y, other chroma
    torch.testing.assert_close(luma(recoloured), luma(x), atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.nn.init.normal_(guided.net.tail.weight, std=0.05)  # an untrained tail is almost silent
        same = (luma(guided(recoloured)) - luma(guided(x))).abs().max()
        torch.nn.init.normal_(guided.net.guide.weight, std=0.1)
        moved = (luma(guided(recoloured)) - luma(guided(x))).abs().max()
    assert same < 1e-5 < 1e-3 < moved  # a zero guide ignores chroma; a trained one reads it


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_colour_transforms_are_counted(scale):
    """A luma net without a bicubic skip costs its network on Y, the bicubic chroma (16 taps x 2
    channels per HR pixel) and the two 3x3 colour matrices: RGB -> YCbCr per LR pixel, YCbCr ->
    RGB per HR pixel."""
    model = build_model("edsr-b6c32-y", scale, allow_random=True)
    assert not model.phase_output
    net_on_y = count_macs(model.net, torch.zeros(1, 1, 16, 20))
    total = count_macs(model, torch.zeros(1, 3, 16, 20))
    hr_px = 16 * 20 * scale * scale
    assert total - net_on_y == 2 * 16 * hr_px + 9 * 16 * 20 + 9 * hr_px


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_skip_net_folds_the_colour_transforms_into_an_rgb_bicubic(scale):
    """FSRCNN-PS: its Y skip becomes the RGB bicubic (16 taps x 3 channels per HR pixel), and the
    colour work left is Y per LR pixel (3 MACs); nothing per HR pixel."""
    model = build_model("fsrcnn-ps-56-y", scale, allow_random=True)
    assert model.phase_output
    net_on_y = count_macs(model.net, torch.zeros(1, 1, 16, 20))
    total = count_macs(model, torch.zeros(1, 3, 16, 20))
    hr_px = 16 * 20 * scale * scale
    assert total - net_on_y == (3 - 1) * 16 * hr_px + 3 * 16 * 20


def _through_ycbcr(model: YChannel, x: torch.Tensor) -> torch.Tensor:
    """The luma model's output the long way: to YCbCr, the net on Y (with its bicubic skip),
    bicubic chroma, back to RGB."""
    m = ychannel.RGB_TO_YCBCR.double()
    offset = ychannel.OFFSET.double().view(1, 3, 1, 1)
    ycc = torch.einsum("ij,njhw->nihw", m, x.double()) + offset
    net_in = ycc if model.chroma_guide else ycc[:, :1]
    if model.chroma_guide:
        net_in = torch.cat([ycc[:, :1], ycc[:, 1:] - offset[:, 1:]], dim=1)
    y = model.net.double()(net_in)
    chroma = F.interpolate(ycc[:, 1:], scale_factor=model.scale, mode="bicubic", align_corners=False)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), torch.cat([y, chroma], dim=1) - offset)


@pytest.mark.parametrize("name, scale", [("fsrcnn-ps-56-m9p4-y", 4), ("fsrcnn-ps-56-m12-yc", 3), ("fsrcnn-ps-36-t1-y", 2)])
def test_phases_equal_the_output_through_ycbcr(name, scale):
    torch.manual_seed(3)
    model = build_model(name, scale, allow_random=True).eval()
    for p in model.parameters():  # a residual of a trained net's size, not an untrained tail's 1e-3
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        ref = _through_ycbcr(model, x)
        out = model(x)
        interleaved = interp.phases_to_image(model.phases(x), scale)
    assert (ref - F.interpolate(x.double(), scale_factor=scale, mode="bicubic")).abs().mean() > 0.01  # not bicubic
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=0)
    torch.testing.assert_close(interleaved, out, atol=0, rtol=0)
