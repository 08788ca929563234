"""Mixed precision for the registered models: learned layers in a narrow float type, the exact
parts (bicubic skips, colour transforms, the final sum) in float32.

A bf16 branch calls :func:`learned_layers_to` once; each model's ``forward`` casts its input to
:func:`learned_dtype` of its first learned layer and the learned result back to the input's
dtype before adding the skip. With every layer in float32 both casts are no-ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def learned_layers_to(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module`` with every layer that holds parameters (convolutions, PReLUs, ...) in ``dtype``,
    in place; the rest (bicubic skips, colour-transform buffers) stays float32.

    Fed float32, a registered model then runs its learned part in ``dtype`` and adds it to its
    bicubic skip in float32. Casting the whole model instead rounds the output itself to
    ``dtype``: bf16 keeps 8 significant bits, a step of 1/256 above 0.5, a full 8-bit level,
    while here only the residual's rounding reaches the output.
    """
    for layer in module.modules():
        if next(layer.parameters(recurse=False), None) is not None:
            layer.to(dtype)
    return module


def learned_dtype(layer: nn.Module, x: torch.Tensor) -> torch.dtype:
    """The float dtype ``layer``'s parameters are in, or ``x``'s when it has none (an int8
    island keeps its weights packed): what to cast ``x`` to before running ``layer``."""
    for p in layer.parameters():
        if p.is_floating_point():
            return p.dtype
    return x.dtype


_PRELU_CHUNK_BYTES = 2 << 20  # float32 temporaries of a narrow-float PReLU: cut into blocks of rows this large


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same state dict) that, on a CPU, computes a narrower float
    input in float32 and rounds the result back to the input's dtype: the value of a bf16 PReLU
    to within its final rounding, at a fraction of its cost. Float32 input, or any input on a
    GPU: exactly ``nn.PReLU``.

    Why: torch's CPU PReLU kernel has no vectorised bf16 path. On the AVX-512 BF16 EPYC (torch
    2.13, one thread, a 204x344 channels-last map, median of 15) it took 5.5 ms on 12 channels
    and 10.9 ms on 56, against 0.22 and 0.79 ms in float32, while the bf16 convolutions around it
    ran 2-5x faster than float32 ones. The casts cost less than the difference: a whole
    FSRCNN-PS-56-M9P4-Y on a 320x180 frame (one thread) took 88-94 ms in bf16 with torch's
    PReLU, 33-40 ms with this one, and 55-58 ms in float32 (docs/performance.md).

    A (N, C, H, W) input goes through float32 a block of rows at a time, each block's float32 copy
    about :data:`_PRELU_CHUNK_BYTES`: it stays in the cache between the casts and the PReLU, and a
    large frame needs no float32 copy of the whole map (56 channels of a 1280x720 frame: 206 MiB).
    One thread, 56 channels: 204x344 1.5 ms against 2.3 whole; 804x1336 79 ms against 317.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or x.device.type != "cpu":
            return F.prelu(x, self.weight)
        weight = self.weight.float()
        if x.ndim != 4:
            return F.prelu(x.float(), weight).to(x.dtype)
        n, c, h, w = x.shape
        rows = max(1, _PRELU_CHUNK_BYTES // max(n * c * w * 4, 1))  # float32 rows of the batch per block
        if rows >= h:
            return F.prelu(x.float(), weight).to(x.dtype)
        out = torch.empty_like(x)
        for top in range(0, h, rows):
            out[:, :, top:top + rows] = F.prelu(x[:, :, top:top + rows].float(), weight)
        return out
