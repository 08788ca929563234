"""EDSR-style residual networks (Lim et al., CVPRW 2017) at several depths and widths.

Layout: head 3x3 conv (3 -> C); ``blocks`` residual blocks (3x3 conv, ReLU, 3x3 conv, scaled
by ``res_scale``, added to the block input; no batch norm); a body-end 3x3 conv; a global
skip from the head; a sub-pixel upsampler (3x3 conv C -> C*s*s and pixel shuffle by s for
x2 and x3, two such x2 stages for x4); a 3x3 conv C -> 3. A global bicubic skip of the input
is added, so the network learns the residual over bicubic, which trains much faster.

``asymmetric=True`` replaces every 3x3 conv inside the residual blocks by a 3x1 conv followed
by a 1x3 conv (same channels, nothing between them): about 2/3 of the block multiply-adds
with the same receptive field.

Registered as MMSR's "same network, different depth": ``edsr-b{blocks}c{channels}`` (and
``-asym``) at x2/x3/x4.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vsr_stream.errors import ModelInputError
from vsr_stream.models.dtypes import learned_dtype
from vsr_stream.models.interp import Bicubic
from vsr_stream.models.registry import ModelDescriptor

SCALES = (2, 3, 4)
# LR context the upsampler plus a final HR 3x3 conv need, at x2, x3 and x4. The LR conv needs
# 1. At x2/x3 the HR conv reads HR rows o-1..o+1, which for the HR rows of LR rows [a, b) lie
# in LR rows a-1..b: 1 more. At x4 the 2x-level and 4x-level convs together also reach only
# LR rows a-1..b (HR row 4a-1 -> 2x row 2a-1 -> 2x row 2a-2 -> LR row a-1).
UPSAMPLER_RADIUS_PX = 2


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 conv with zero padding 1 (same size)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def asymmetric_conv3x3(channels: int) -> nn.Sequential:
    """3x1 conv then 1x3 conv, both ``channels`` -> ``channels``, same size.

    The 3x1 has no bias: a bias there would pass through the linear 1x3 as a constant
    (except at the zero-padded border), which the 1x3's own bias already provides.
    """
    return nn.Sequential(
        nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False),
        nn.Conv2d(channels, channels, (1, 3), padding=(0, 1)),
    )


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))`` on ``(N, C, H, W)``, same shape; no batch norm.

    ``kernel_px`` is the (odd) square kernel size; ``asymmetric`` (3x3 only) swaps each conv
    for :func:`asymmetric_conv3x3`. Receptive radius: ``2 * (kernel_px // 2)`` pixels.
    """

    def __init__(self, channels: int, res_scale: float = 1.0, kernel_px: int = 3, asymmetric: bool = False) -> None:
        super().__init__()
        if asymmetric and kernel_px != 3:
            raise ModelInputError(f"asymmetric convolutions replace 3x3 kernels, not {kernel_px}x{kernel_px}")
        self.res_scale = res_scale
        self.body = nn.Sequential(
            _block_conv(channels, kernel_px, asymmetric),
            nn.ReLU(inplace=True),
            _block_conv(channels, kernel_px, asymmetric),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale

    def extra_repr(self) -> str:
        return f"res_scale={self.res_scale}"


def _block_conv(channels: int, kernel_px: int, asymmetric: bool) -> nn.Module:
    if asymmetric:
        return asymmetric_conv3x3(channels)
    return nn.Conv2d(channels, channels, kernel_px, padding=kernel_px // 2)


def upsampler(channels: int, scale: int) -> nn.Sequential:
    """Sub-pixel upsampler ``(N, C, H, W)`` -> ``(N, C, H*scale, W*scale)`` for scale 2, 3 or 4.

    One 3x3 conv (C -> C*s*s) and pixel shuffle by s for x2 and x3; two x2 stages for x4
    (cheaper than one C -> 16C conv). Raises ModelInputError for another scale.
    """
    if scale in (2, 3):
        factors = [scale]
    elif scale == 4:
        factors = [2, 2]
    else:
        raise ModelInputError(f"sub-pixel upsampler supports scales 2, 3, 4, not {scale!r}")
    layers: list[nn.Module] = []
    for factor in factors:
        layers += [conv3x3(channels, channels * factor * factor), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR-style net: ``(N, C, H, W)`` -> ``(N, C, H*scale, W*scale)``, any H, W >= 1; no clamping.

    C is ``image_channels``: 3 for RGB, 1 for a luma net (see :mod:`vsr_stream.models.ychannel`).
    ``light_tail`` replaces the upsampler and tail by one 3x3 conv to ``C * scale**2`` channels
    and a pixel shuffle: far fewer multiply-adds at x4 (the upsampler is most of a small
    EDSR's cost), one pixel less receptive radius.

    Output is ``tail(upsample(body(head(x)) + head(x))) + bicubic(x)``: the learned part in its
    parameters' dtype, the bicubic skip and the sum in the input's (see
    :func:`~vsr_stream.models.dtypes.learned_layers_to`). PyTorch's default initialisation (as the
    reference EDSR code).
    """

    def __init__(
        self, blocks: int, channels: int, scale: int, asymmetric: bool = False, res_scale: float = 1.0,
        image_channels: int = 3, light_tail: bool = False,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.skip = Bicubic(scale)
        self.head = conv3x3(image_channels, channels)
        self.body = nn.Sequential(
            *(ResBlock(channels, res_scale, asymmetric=asymmetric) for _ in range(blocks)), conv3x3(channels, channels)
        )
        if light_tail:  # one conv to image_channels * s * s, then shuffle (FSRCNN-PS / ESPCN style)
            self.upsample = nn.Sequential(conv3x3(channels, image_channels * scale * scale), nn.PixelShuffle(scale))
            self.tail = nn.Identity()
        else:
            self.upsample = upsampler(channels, scale)
            self.tail = conv3x3(channels, image_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        features = self.head(x.to(learned_dtype(self.head, x)))  # may be narrower than x's: see models.dtypes
        return self.tail(self.upsample(self.body(features) + features)).to(x.dtype) + skip


def edsr(blocks: int, channels: int, scale: int, asymmetric: bool = False, res_scale: float = 1.0) -> EDSR:
    """A fresh :class:`EDSR` with ``blocks`` residual blocks of width ``channels`` for ``scale`` (2, 3, 4).

    ``res_scale`` multiplies each block's residual (0.1 stabilises wide nets, 1.0 suits
    small ones). Raises ModelInputError for another scale.
    """
    return EDSR(blocks, channels, scale, asymmetric=asymmetric, res_scale=res_scale)


def receptive_radius_px(blocks: int, light_tail: bool = False) -> int:
    """LR context (px, every side) an EDSR with ``blocks`` blocks needs at x2, x3 and x4: 2*blocks + 4
    (2*blocks + 3 with the light tail).

    Head 1, two 3x3 convs per block (an asymmetric pair reaches 1 row and 1 column, like a
    3x3), body-end 1, ``UPSAMPLER_RADIUS_PX`` 2 (the light tail's one conv: 1); the bicubic
    skip's 2 is less. Tight.
    """
    return 1 + 2 * blocks + 1 + (1 if light_tail else UPSAMPLER_RADIUS_PX)


def _descriptor(blocks: int, channels: int, asymmetric: bool = False) -> ModelDescriptor:
    suffix = "-asym" if asymmetric else ""
    kind = "3x1+1x3" if asymmetric else "3x3"
    return ModelDescriptor(
        name=f"edsr-b{blocks}c{channels}{suffix}",
        scales=SCALES,
        builder=partial(edsr, blocks, channels, asymmetric=asymmetric),
        learned=True,
        supports_half=True,
        receptive_radius_px=receptive_radius_px(blocks),
        min_size_px=1,
        description=f"EDSR-style residual net, {blocks} blocks x {channels} channels ({kind}), bicubic skip",
        family="edsr",
    )


DESCRIPTORS = (
    _descriptor(4, 32),
    _descriptor(6, 32),
    _descriptor(8, 48),
    _descriptor(16, 64),
    _descriptor(6, 32, asymmetric=True),
    _descriptor(8, 48, asymmetric=True),
)
