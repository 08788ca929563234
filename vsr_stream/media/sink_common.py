"""Pieces both sinks share: the frame array contract, hidden temporary names, and turning
av/OS failures into SinkError (keeping a real errno such as ENOSPC or EFBIG)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vsr_stream.errors import SinkError


def check_array(array: np.ndarray) -> None:
    """ValueError unless ``array`` is (H, W, 3) uint8 or uint16."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected an (H, W, 3) uint8 or uint16 RGB array, got shape {array.shape} dtype {array.dtype}")


def temp_sibling(final: Path, tag: str = "tmp") -> Path:
    """Hidden sibling of ``final`` that keeps its extension (FFmpeg picks the muxer by it):
    ``out.mp4`` -> ``.out.mp4.vsr-tmp-<pid>.mp4``."""
    return final.with_name(f".{final.name}.vsr-{tag}-{os.getpid()}{final.suffix}")


def sink_error(e: BaseException, message: str) -> SinkError:
    """SinkError for ``e`` with ``message``, carrying its errno when it is a real one (av's
    non-errno codes such as AVERROR_INVALIDDATA are large numbers)."""
    code = e.errno if isinstance(e, OSError) and e.errno and 0 < e.errno < 4096 else None
    return SinkError(code, message) if code else SinkError(message)
