"""Geometric self-ensemble (Lim et al., EDSR): average a model over the 8 flips and rotations.

Each of the 8 elements of the dihedral group (4 rotations by 90 degrees, each with or without
a horizontal flip) is applied to the input, the model is run, the inverse transform is
applied to its output and the 8 results are averaged. It costs 8 forward passes for a small
PSNR gain (EDSR+ and MDSR+ in the paper). A model that commutes with every flip and rotation
(nearest, bicubic) is unchanged. The receptive radius is the wrapped model's (the transforms
are symmetric).
"""

from __future__ import annotations

import torch
from torch import nn

_SPATIAL_DIMS = (-2, -1)
_TRANSFORMS = tuple((quarter_turns, flip) for quarter_turns in range(4) for flip in (False, True))


class SelfEnsemble(nn.Module):
    """``module`` averaged over the 8 dihedral transforms of its input; same contract as ``module``.

    ``(N, C, H, W)`` -> the wrapped module's output shape; H != W is fine (a quarter turn
    swaps them and the inverse turn swaps them back), provided ``module`` accepts both
    ``H x W`` and ``W x H`` inputs and its output has the same spatial layout as its input.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for quarter_turns, flip in _TRANSFORMS:
            out = _untransform(self.module(_transform(x, quarter_turns, flip)), quarter_turns, flip)
            total = out if total is None else total + out
        return total / len(_TRANSFORMS)


def with_self_ensemble(module: nn.Module) -> SelfEnsemble:
    """Wrap ``module`` in a :class:`SelfEnsemble` (8x the work); the wrapper keeps ``module``'s mode."""
    return SelfEnsemble(module).train(module.training)


def _transform(x: torch.Tensor, quarter_turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, quarter_turns, _SPATIAL_DIMS)
    return torch.flip(x, (-1,)) if flip else x


def _untransform(y: torch.Tensor, quarter_turns: int, flip: bool) -> torch.Tensor:
    y = torch.flip(y, (-1,)) if flip else y
    return torch.rot90(y, -quarter_turns, _SPATIAL_DIMS)
