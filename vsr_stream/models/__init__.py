"""Super-resolution models: the registry, and the built-in models registered in it explicitly."""

from __future__ import annotations

from vsr_stream.models import edsr, fsrcnn, interp, mdsr, ychannel
from vsr_stream.models.registry import (
    ModelDescriptor,
    build_model,
    descriptors,
    get,
    load_matching_weights,
    load_weights,
    names,
    read_weights,
    register,
    save_weights,
    untrained_model,
)

for _desc in (*fsrcnn.DESCRIPTORS, *edsr.DESCRIPTORS, *mdsr.DESCRIPTORS, *ychannel.DESCRIPTORS, *interp.DESCRIPTORS):
    register(_desc)
del _desc

__all__ = [
    "ModelDescriptor",
    "build_model",
    "descriptors",
    "get",
    "load_matching_weights",
    "load_weights",
    "names",
    "read_weights",
    "register",
    "save_weights",
    "untrained_model",
]
