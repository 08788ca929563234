"""MDSR (Lim et al., CVPRW 2017): one shared residual body serving x2, x3 and x4.

Layout: a shared head 3x3 conv (3 -> C); per scale, a pre-processing stage of two residual
blocks with 5x5 convs (as in the paper: a wide early receptive field that adapts the
features to the scale); a shared body of ``blocks`` 3x3 residual blocks and a body-end conv
with a global skip from the pre-processed features; per scale, a sub-pixel upsampler; a
shared 3x3 tail conv (C -> 3); plus a global bicubic skip of the input.

One module holds every scale's branches, so its state dict (and one weights file) serves all
scales; the scale a forward pass uses is chosen at construction or by :meth:`MDSR.set_scale`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vsr_stream.errors import ModelInputError
from vsr_stream.models.edsr import UPSAMPLER_RADIUS_PX, ResBlock, conv3x3, upsampler
from vsr_stream.models.dtypes import learned_dtype
from vsr_stream.models.interp import Bicubic
from vsr_stream.models.registry import ModelDescriptor

SCALES = (2, 3, 4)
PRE_BLOCKS = 2
PRE_KERNEL_PX = 5


class MDSR(nn.Module):
    """Multi-scale net: ``(N, 3, H, W)`` -> ``(N, 3, H*s, W*s)`` at the current scale s; no clamping.

    Any H, W >= 1; the learned part runs in its parameters' dtype, the bicubic skip and the sum
    in the input's (see :func:`~vsr_stream.models.dtypes.learned_layers_to`). Branches of scale s are
    ``pre_process[str(s)]`` and ``upsample[str(s)]``; ``scale`` must be one of ``scales``
    (ModelInputError otherwise). PyTorch's default initialisation.
    """

    def __init__(self, blocks: int, channels: int, scale: int, scales: tuple[int, ...] = SCALES) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.head = conv3x3(3, channels)
        self.pre_process = nn.ModuleDict({str(s): _pre_process(channels) for s in self.scales})
        self.body = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)), conv3x3(channels, channels))
        self.upsample = nn.ModuleDict({str(s): upsampler(channels, s) for s in self.scales})
        self.tail = conv3x3(channels, 3)
        self.skip = Bicubic(scale)
        self.set_scale(scale)

    def set_scale(self, scale: int) -> None:
        """Make later forward passes upscale by ``scale``; raises ModelInputError if it has no branch."""
        if scale not in self.scales:
            raise ModelInputError(f"MDSR has branches for scales {self.scales}, not {scale!r}")
        self.scale = self.skip.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        features = self.pre_process[str(self.scale)](self.head(x.to(learned_dtype(self.head, x))))  # see models.dtypes
        features = self.body(features) + features
        return self.tail(self.upsample[str(self.scale)](features)).to(x.dtype) + skip

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _pre_process(channels: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, kernel_px=PRE_KERNEL_PX) for _ in range(PRE_BLOCKS)))


def receptive_radius_px(blocks: int) -> int:
    """LR context (px, every side) an MDSR with ``blocks`` body blocks needs at every scale: 2*blocks + 12.

    Head 1, pre-processing 2 blocks x 2 convs x 2 (5x5) = 8, body 2 per block, body-end 1,
    upsampler and tail 2 (``edsr.UPSAMPLER_RADIUS_PX``); the bicubic skip's 2 is less. Tight.
    """
    pre_px = PRE_BLOCKS * 2 * (PRE_KERNEL_PX // 2)
    return 1 + pre_px + 2 * blocks + 1 + UPSAMPLER_RADIUS_PX


def _descriptor(blocks: int, channels: int) -> ModelDescriptor:
    return ModelDescriptor(
        name=f"mdsr-b{blocks}c{channels}",
        scales=SCALES,
        builder=partial(MDSR, blocks, channels),
        learned=True,
        supports_half=True,
        receptive_radius_px=receptive_radius_px(blocks),
        min_size_px=1,
        description=f"MDSR, {blocks} shared blocks x {channels} channels; one weights file serves x2, x3 and x4",
        family="mdsr",
    )


DESCRIPTORS = (_descriptor(8, 48),)
