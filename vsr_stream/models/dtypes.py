"""Mixed precision for the registered models: learned layers in a narrow float type, the exact
parts (bicubic skips, colour transforms, the final sum) in float32.

A bf16 branch calls :func:`learned_layers_to` once; each model's ``forward`` casts its input to
:func:`learned_dtype` of its first learned layer and the learned result back to the input's
dtype before adding the skip. With every layer in float32 both casts are no-ops.
"""

from __future__ import annotations

import torch
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
