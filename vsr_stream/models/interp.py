"""Interpolation upscalers without weights: the baselines and the cheapest route for flat tiles."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.errors import ModelInputError
from vsr_stream.models.registry import ModelDescriptor

SCALES = (2, 3, 4)


BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution parameter


def _cubic(t: float) -> float:
    """Keys' cubic convolution kernel with a = BICUBIC_A."""
    a, t = BICUBIC_A, abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


@functools.lru_cache(maxsize=None)
def phase_taps(scale: int) -> torch.Tensor:
    """float64 ``(scale, 5)``: row p holds the weights of LR offsets -2..+2 for HR phase p.

    HR pixel ``o = scale * i + p`` samples LR position ``x = i + (p + 0.5) / scale - 0.5``; its
    four taps ``floor(x) - 1 .. floor(x) + 2`` lie within ``i - 2 .. i + 2``, so five offsets cover
    every phase (one of them is zero in each row).
    """
    taps = torch.zeros(scale, 5, dtype=torch.float64)
    for p in range(scale):
        x = (p + 0.5) / scale - 0.5
        f = math.floor(x)
        for off in range(f - 1, f + 3):
            taps[p, off + 2] = _cubic(x - off)
    return taps


@functools.lru_cache(maxsize=64)
def _polyphase_kernel(scale: int, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(scale * scale * channels, channels, 5, 5)``: output channel ``p * channels + c`` holds
    phase p's 2-D taps on input channel c (zero on the other channels): phase-major order."""
    t = phase_taps(scale)
    phase = (t[:, None, :, None] * t[None, :, None, :]).reshape(scale * scale, 5, 5)
    kernel = torch.zeros(scale * scale, channels, channels, 5, 5, dtype=torch.float64)
    for c in range(channels):
        kernel[:, c, c] = phase
    return kernel.reshape(scale * scale * channels, channels, 5, 5).to(dtype=dtype, device=device)


def bicubic_phases(x: torch.Tensor, scale: int) -> torch.Tensor:
    """:func:`bicubic_upsample` before its interleave: ``(N, C, H, W)`` float →
    ``(N, scale * scale * C, H, W)``, channel ``(i * scale + j) * C + c`` holding HR pixels
    ``(scale * y + i, scale * x + j)`` of channel c (see :func:`phases_to_image`).

    One dense 5x5 convolution (edge pixels replicated): on 3 channels it measured 2x the time of
    the depthwise one, and its phase-major order makes the interleave into an NHWC frame 2.4x
    faster than from channel-major phases (320x180 x4, 2.7 against 6.5 ms).
    """
    kernel = _polyphase_kernel(scale, x.shape[1], x.dtype, x.device)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel)


def phases_to_image(phases: torch.Tensor, scale: int) -> torch.Tensor:
    """Interleave phase-major phases ``(N, scale * scale * C, H, W)`` into ``(N, C, H * scale,
    W * scale)`` (for C = 1 the same as ``F.pixel_shuffle``)."""
    n, k, h, w = phases.shape
    c = k // (scale * scale)
    return phases.reshape(n, scale, scale, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * scale, w * scale)


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)`` for an
    integer ``scale``, as one 5x5 convolution per phase and an interleave.

    Edge pixels are replicated as PyTorch's kernel clamps its indices, so the result is the
    same to float rounding (1e-6 at x2 and x4; 3e-5 at x3, where PyTorch's float32 1/3 shifts
    the sample positions slightly), and 3-4x faster on the CPU than PyTorch's bicubic kernel.
    ``x``: ``(N, C, H, W)`` float; returns ``(N, C, H*scale, W*scale)``.
    """
    return phases_to_image(bicubic_phases(x, scale), scale)


@functools.lru_cache(maxsize=64)
def _axis_kernels(scale: int, channels: int, extra: int, alpha: float, dtype: torch.dtype,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical ``(scale * C, C, 5, 1)`` and horizontal ``(scale * C, C + extra, 1, 5)`` phase taps:
    output channel ``p * C + c`` holds phase p of channel c (zero on the other channels),
    phase-major. With ``extra`` = scale, horizontal input channel ``C + p`` adds ``alpha`` times
    itself (centre tap) to phase p of every channel: a residual summed by the pass itself."""
    t = phase_taps(scale)
    taps = (t[:, None, None, :] * torch.eye(channels, dtype=t.dtype)[None, :, :, None]).reshape(scale * channels,
                                                                                               channels, 5)
    horizontal = torch.zeros(scale * channels, channels + extra, 1, 5, dtype=t.dtype)
    horizontal[:, :channels, 0] = taps
    for p in range(extra):
        horizontal[p * channels:(p + 1) * channels, channels + p, 0, 2] = alpha
    return taps[..., None].to(dtype=dtype, device=device), horizontal.to(dtype=dtype, device=device)


def bicubic_nhwc(x: torch.Tensor, scale: int, residual: torch.Tensor | None = None,
                 alpha: float = 1.0) -> torch.Tensor:
    """:func:`bicubic_upsample` on channels-last data: ``(N, H, W, C)`` float → ``(N, H * scale,
    W * scale, C)``, a new tensor of ``x``'s dtype (the same values to float rounding).

    One axis at a time on channels-last tensors: the vertical phases, interleaved into rows, then
    the horizontal ones, whose phase-major channels are already the HR frame's NHWC layout, so the
    large interleave :func:`bicubic_phases` needs never happens, and each pass does 5 taps where
    the 2-D kernel does 25. 320x180x3 x4 on two cores, median of 31: 3.0-3.1 ms, against 4.6-4.8
    for :func:`bicubic_phases` and its interleave into an NHWC frame.

    ``residual``: one channel's HR values as phase-major phases ``(N, scale * scale, H, W)`` of
    ``x``'s dtype (``YChannel.residual_phases``); the result is then ``bicubic(x) + alpha *
    residual`` on every channel, summed by the horizontal pass as extra input channels rather
    than in a broadcast add over the HR frame (320x180x3 x4, one AVX2 core, median of 80
    interleaved calls with the clamp and rounding: 18.9-19.8 against 25.3-25.9 ms).
    """
    n, h, w, c = x.shape
    extra = 0 if residual is None else scale
    if residual is not None and tuple(residual.shape) != (n, scale * scale, h, w):
        raise ModelInputError(f"bicubic_nhwc: expected residual phases of shape {(n, scale * scale, h, w)}, "
                              f"got {tuple(residual.shape)}")
    vertical, horizontal = _axis_kernels(scale, c, extra, float(alpha), x.dtype, x.device)
    rows = F.conv2d(F.pad(x.permute(0, 3, 1, 2), (0, 0, 2, 2), mode="replicate"), vertical)  # (N, s*C, H, W)
    # the horizontal pass's input, NHWC with two replicated columns each side: the rows interleaved
    # (HR row s*y + i holds vertical phase i of LR row y), then the residual's column phases
    padded = x.new_empty(n, h * scale, w + 4, c + extra)
    padded[:, :, 2:w + 2, :c].view(n, h, scale, w, c).copy_(
        rows.permute(0, 2, 3, 1).reshape(n, h, w, scale, c).transpose(2, 3))
    if residual is not None:  # phase i * s + j: HR row s*y + i, column s*x + j
        padded[:, :, 2:w + 2, c:].view(n, h, scale, w, scale).copy_(
            residual.reshape(n, scale, scale, h, w).permute(0, 3, 1, 4, 2))
    padded[:, :, :2] = padded[:, :, 2:3]
    padded[:, :, w + 2:] = padded[:, :, w + 1:w + 2]
    up = F.conv2d(padded.permute(0, 3, 1, 2), horizontal)  # (N, s*C, sH, W), channels-last
    return up.permute(0, 2, 3, 1).reshape(n, h * scale, w * scale, c)  # a view when channels-last


def bicubic_add(base: torch.Tensor, change: torch.Tensor, scale: int) -> torch.Tensor:
    """``base + bicubic(change)``, rounded and clamped to ``base``'s integer range: a new tensor.

    ``base``: ``(H * scale, W * scale, C)`` uint8 or uint16 (an HR frame); ``change``: ``(H, W, C)``
    integer or float (an LR difference), on the same device. The upscale is :func:`bicubic_nhwc`.
    320x180 x4 on two cores: 3.6-5.6 ms with the sum, against 12.6 for the depthwise phases and
    their interleave. Raises :class:`ModelInputError` for other shapes or a base that is not uint8/uint16.
    """
    if base.dtype not in (torch.uint8, torch.uint16) or base.ndim != 3 or change.ndim != 3 \
            or tuple(base.shape) != (change.shape[0] * scale, change.shape[1] * scale, change.shape[2]):
        raise ModelInputError(f"bicubic_add: expected a uint8/uint16 (H*{scale}, W*{scale}, C) base and an (H, W, C) "
                         f"change, got {tuple(base.shape)} {base.dtype} and {tuple(change.shape)} {change.dtype}")
    # +0.5 before the taps (each phase's taps sum to 1) makes the final truncation round to nearest
    up = bicubic_nhwc((change.to(torch.float32) + 0.5)[None], scale)[0]
    return up.add_(base).clamp_(0.0, float(torch.iinfo(base.dtype).max) + 0.5).to(base.dtype)


class Bicubic(nn.Module):
    """Bicubic ``(N, C, H, W)`` -> ``(N, C, H*scale, W*scale)``, same dtype; no clamping.

    PyTorch's kernel (a = -0.75), half-pixel centres (``align_corners=False``), edge pixels
    replicated, computed by :func:`bicubic_upsample`. HR pixel o samples LR position
    (o + 0.5) / scale - 0.5 with taps floor(x) - 1 .. floor(x) + 2, so a tile needs 2 LR pixels
    of context. It overshoots [0, 1] at sharp edges; the caller clamps. The MAC counter counts
    it as 16 multiply-adds per output value (its non-zero taps). With ``interleave=False`` it
    returns the phases (:func:`bicubic_phases`), the same values not yet interleaved.

    :attr:`phase_output` marks a model whose output is this bicubic upscale plus, for a network,
    a learned residual given as phase-major phases by its ``residual_phases(x)`` (the same on every
    channel): a branch (``BranchModel``) then runs only the residual through the network and
    adds it to :func:`bicubic_nhwc` of the frame while clamping, rounding and converting it.
    """

    TAPS_2D = 16
    phase_output = True

    def __init__(self, scale: int, interleave: bool = True) -> None:
        super().__init__()
        self.scale, self.interleave = scale, interleave

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = bicubic_phases(x, self.scale)
        return phases_to_image(phases, self.scale) if self.interleave else phases

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        """The output before its interleave: ``phases_to_image(self.phases(x), scale) == self(x)``."""
        return bicubic_phases(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}" + ("" if self.interleave else ", interleave=False")


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
