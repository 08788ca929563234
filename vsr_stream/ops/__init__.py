"""Array math shared by the stages: NumPy references that also run under CuPy (``xp``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def array_module(a: Any) -> ModuleType:
    """The array library of ``a``: ``cupy`` for a CuPy array, else ``numpy``.

    CuPy is imported only when ``a`` is one of its arrays, so CPU-only hosts never need it.
    """
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np
