"""NumPy and CuPy arrays as torch tensors and back, sharing memory wherever torch allows.

torch cannot view read-only memory (a received ZeroMQ buffer, a decoded frame), so such a NumPy
array is copied once; a CuPy array goes through DLPack and stays on its device.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from vsr_stream.ops import array_module


def as_tensor(a: Any) -> torch.Tensor:
    """``a`` (NumPy or CuPy) as a torch tensor on its device: a view, or for a read-only NumPy
    array a copy."""
    if array_module(a) is not np:
        return torch.from_dlpack(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def from_tensor(t: torch.Tensor, xp: ModuleType) -> Any:
    """``t`` as an ``xp`` array: NumPy on the host (a view of a CPU tensor), CuPy through DLPack."""
    return t.cpu().numpy() if xp is np else xp.from_dlpack(t)
