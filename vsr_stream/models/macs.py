"""Honest multiply-add (MAC) counts of a model, per output pixel, and the extra work of tiling.

What counts, per forward pass (one MAC = one multiply and its accumulate):

* ``nn.Conv2d``: every output element costs ``in_channels / groups * kh * kw`` MACs, taps on
  the zero padding included (what a dense conv kernel executes).
* ``nn.ConvTranspose2d``: counted as its equivalent strided convolution, non-zero products
  only: for each output position, only the kernel taps that land on an input sample count
  (``in_channels / groups`` MACs each, per output channel). Counted exactly per position, so
  borders, padding and ``output_padding`` are honest; in the interior a stride-s, k-tap
  kernel averages ``(k / s)**2`` taps per output element.
* ``nn.Linear``: ``in_features`` MACs per output element.
* :class:`~vsr_stream.models.interp.Bicubic` (the bicubic skips and chroma, a polyphase
  convolution): 16 per output element and channel, its non-zero taps.
* ``F.interpolate``: the real work of the kernel per output element and channel: bicubic
  16 (a 4x4 tap window), bilinear 4, nearest 0. Upsampling only (antialiased downsampling
  has wider kernels and is refused).
* ``torch.einsum`` of two or more operands (the luma nets' colour transforms, 3x3 per pixel):
  the product of the sizes of all its indices, the multiply-adds of the plain contraction.
* Free: activations (ReLU, PReLU, LeakyReLU), additions, scalar multiplies (residual
  scaling), PixelShuffle and other reshapes. They are memory traffic, not multiply-adds.

A leaf module with parameters of any other type (e.g. batch norm) raises ModelInputError
rather than being silently counted as free.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from vsr_stream.errors import ModelInputError
from vsr_stream.geometry import plan_tiles
from vsr_stream.messages import GEOM_COLUMNS
from vsr_stream.models.interp import Bicubic

INTERPOLATE_TAPS_2D = {"nearest": 0, "nearest-exact": 0, "bilinear": 4, "bicubic": 16}
_FREE_MODULES = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.PixelShuffle, nn.Identity)


def macs_per_output_pixel(module: nn.Module, scale: int, h: int = 64, w: int = 64) -> float:
    """MACs of ``module`` per HR output pixel (all 3 channels), for one ``(1, 3, h, w)`` LR input.

    Runs one forward pass (no grad) on zeros of the module's dtype and device; the module is
    not otherwise changed. Raises ModelInputError for a layer it cannot count.
    """
    param = next(module.parameters(), None)
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, torch.device("cpu"))
    total = count_macs(module, torch.zeros(1, 3, h, w, dtype=dtype, device=device))
    return total / (h * scale * w * scale)


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Total MACs of ``module(x)`` (any input shape), counted as the module docstring says."""
    _check_countable(module)
    counter = _MacCounter()
    handles = [m.register_forward_hook(_count_hook(counter)) for m in module.modules()]
    try:
        with torch.no_grad(), counter:
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return counter.macs


def layer_macs(module: nn.Module, x: torch.Tensor) -> dict[str, tuple[nn.Module, int]]:
    """Each learned layer's (convolution, transposed convolution, linear) MACs in ``module(x)``, by
    layer name, as the module docstring counts them; layers the pass does not run are left out."""
    learned = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    found: dict[str, tuple[nn.Module, int]] = {}

    def hook(name: str):
        def record(layer: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            found[name] = (layer, found.get(name, (layer, 0))[1] + _layer_macs(layer, inputs[0], out))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if isinstance(m, learned)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return found


def tiled_overhead(tile_px: int, overlap_px: int, context_px: int, h: int, w: int) -> float:
    """Work factor of tiling an ``h x w`` frame: (sum over tiles of window area) / (h * w).

    Windows are those of :func:`vsr_stream.geometry.plan_tiles` (core plus context, clamped to
    the frame); 1.0 means no extra work. Raises ConfigError for arguments plan_tiles refuses.
    """
    geom = plan_tiles(h, w, tile_px, overlap_px, context_px).astype(np.int64)
    window_h, window_w = geom[:, GEOM_COLUMNS.index("wh")], geom[:, GEOM_COLUMNS.index("ww")]
    return float((window_h * window_w).sum()) / (h * w)


def conv_transpose_taps(in_px: int, out_px: int, kernel_px: int, stride: int, padding: int, dilation: int) -> int:
    """Along one axis of a transposed conv: (input sample, kernel tap) pairs that land on an output position.

    Tap t of input i lands on output ``i * stride - padding + t * dilation``; pairs landing
    outside ``[0, out_px)`` are cropped away and cost nothing.
    """
    landing = np.arange(in_px)[:, None] * stride - padding + np.arange(kernel_px)[None, :] * dilation
    return int(((landing >= 0) & (landing < out_px)).sum())


class _MacCounter(TorchFunctionMode):
    """The running MAC total: layer hooks add to it, and while active it adds every ``F.interpolate``
    and ``torch.einsum``."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.interpolate:
            self.macs += _interpolate_taps(kwargs, args[0], out) * out.numel()
        elif func is torch.einsum:
            self.macs += _einsum_macs(args)
        return out


def _einsum_macs(args: tuple) -> int:
    """MACs of ``torch.einsum(equation, *operands)``: the product of every index's size (0 for one
    operand, a permutation or a sum). Raises ModelInputError for an equation with an ellipsis."""
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if "..." in equation:
        raise ModelInputError(f"cannot count MACs of einsum {equation!r} (ellipsis)")
    if len(operands) < 2:
        return 0
    sizes: dict[str, int] = {}
    for spec, operand in zip(equation.replace(" ", "").split("->")[0].split(","), operands):
        sizes.update(zip(spec, operand.shape))
    return int(np.prod(list(sizes.values()), dtype=np.int64))


def _interpolate_taps(kwargs: dict, x: torch.Tensor, out: torch.Tensor) -> int:
    mode = kwargs.get("mode", "nearest")
    if mode not in INTERPOLATE_TAPS_2D or x.dim() != 4:
        raise ModelInputError(f"cannot count MACs of {mode!r} interpolation of a {x.dim()}-d tensor")
    if kwargs.get("antialias") and (out.shape[-2] < x.shape[-2] or out.shape[-1] < x.shape[-1]):
        raise ModelInputError("cannot count MACs of antialiased downsampling")
    return INTERPOLATE_TAPS_2D[mode]


def _count_hook(counter: _MacCounter):
    def hook(layer: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        counter.macs += _layer_macs(layer, inputs[0], out)

    return hook


def _layer_macs(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return out.numel() * (layer.in_channels // layer.groups) * kh * kw
    if isinstance(layer, nn.ConvTranspose2d):
        row_taps, col_taps = (
            conv_transpose_taps(
                x.shape[2 + axis], out.shape[2 + axis], layer.kernel_size[axis], layer.stride[axis],
                layer.padding[axis], layer.dilation[axis],
            )
            for axis in (0, 1)
        )
        # Taps per output position factor into row taps x column taps, so the grid sums do too.
        return out.shape[0] * layer.out_channels * (layer.in_channels // layer.groups) * row_taps * col_taps
    if isinstance(layer, nn.Linear):
        return out.numel() * layer.in_features
    if isinstance(layer, Bicubic):
        return out.numel() * Bicubic.TAPS_2D
    return 0


def _check_countable(module: nn.Module) -> None:
    counted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, *_FREE_MODULES)
    for name, layer in module.named_modules():
        has_own_params = next(layer.parameters(recurse=False), None) is not None
        if has_own_params and not isinstance(layer, counted):
            raise ModelInputError(f"cannot count MACs of layer {name!r} ({type(layer).__name__})")
