"""The wire schema: every message that crosses a ZeroMQ socket, and nothing else.

A message is multipart. Part 0 is a UTF-8 JSON header ``{"v": VERSION, "kind": ..., ...}``
whose ``"arrays"`` entry lists the shape and dtype of each following part; parts 1..n are
raw C-contiguous buffers, sent without copying. Decoding checks every part's byte size
against its declared shape, so a truncated or mismatched message fails loudly. Never pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from vsr_stream.errors import ProtocolError

VERSION = 1

# Data kinds.
STREAMS = "streams"  # decode -> encode: source description (once, before anything else)
FRAME = "frame"  # decode -> classify (LR) and stitch -> encode (HR)
PLAN = "plan"  # classify -> stitch: a frame's size, dtype, upscaled tile count and reused tiles (below)
TILES = "tiles"  # classify -> upscale[k]: windows of one class of one frame
RESULT = "result"  # upscale[k] -> stitch: the upscaled windows of one TILES message
PACKET = "packet"  # decode -> encode: a passthrough (audio/subtitle/data) packet
INGEST = "ingest"  # decode -> encode: when frame ``index`` entered the pipeline (monotonic seconds)
EOS = "eos"  # end of stream on a data path, with the count of items sent
# Control kinds (stage <-> supervisor).
READY = "ready"
START = "start"
STOP = "stop"
DONE = "done"
ERROR = "error"
PROGRESS = "progress"
HELLO = "hello"  # external worker -> directory: which class it serves
WELCOME = "welcome"  # directory -> external worker: addresses and the run's config

DATA_KINDS = frozenset({STREAMS, FRAME, PLAN, TILES, RESULT, PACKET, INGEST, EOS})
CONTROL_KINDS = frozenset({READY, START, STOP, DONE, ERROR, PROGRESS, HELLO, WELCOME})
_ALLOWED_DTYPES = frozenset({"uint8", "uint16", "int16", "int32", "int64", "float16", "float32"})

# Columns of the int32 tile-geometry array carried by TILES and RESULT (one row per tile).
# core: the tile whose upscaled pixels are blended; window: the LR pixels cut for the net.
GEOM_COLUMNS = ("tile_id", "y0", "x0", "h", "w", "wy0", "wx0", "wh", "ww")

# PLAN: header {index, pts, time_base, duration, name, h, w, dtype, n_tiles}; n_tiles counts the
# tiles sent to branches (the RESULT rows stitch waits for). Payload: none when no tile is reused,
# else one int32 (r, 9) GEOM_COLUMNS array, r >= 1: the tiles stitch fills from the previous output
# frame instead (temporal reuse), then, when reuse corrects them (ReuseConfig.correct), the frame's
# LR change since the previous frame: (h, w, 3) int16 (uint8 frames) or int32 (uint16 frames).
# n_tiles + r is the frame's whole tile plan.


@dataclass
class Message:
    """A decoded wire message: its kind, header fields and numpy payloads."""

    kind: str
    header: dict[str, Any] = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.header[key]


def time_base_to_wire(tb: Fraction | None) -> list[int] | None:
    return None if tb is None else [tb.numerator, tb.denominator]


def time_base_from_wire(value: Sequence[int] | None) -> Fraction | None:
    if value is None:
        return None
    if len(value) != 2 or value[1] == 0:
        raise ProtocolError(f"time_base must be [num, den] with den != 0, got {value!r}")
    return Fraction(int(value[0]), int(value[1]))


def encode(msg: Message) -> list[bytes | memoryview]:
    """Serialise ``msg`` into the multipart frames to send (payloads are not copied)."""
    arrays = [np.ascontiguousarray(a) for a in msg.arrays]
    for a in arrays:
        if a.dtype.name not in _ALLOWED_DTYPES:
            raise ProtocolError(f"dtype {a.dtype} cannot go on the wire (allowed: {sorted(_ALLOWED_DTYPES)})")
    header = {
        **msg.header,
        "v": VERSION,
        "kind": msg.kind,
        "arrays": [[list(a.shape), a.dtype.name] for a in arrays],
    }
    parts: list[bytes | memoryview] = [json.dumps(header, separators=(",", ":")).encode()]
    parts.extend(memoryview(a).cast("B") if a.size else b"" for a in arrays)
    return parts


def decode(parts: Sequence[Any]) -> Message:
    """Parse received multipart frames (bytes or zmq.Frame) into a :class:`Message`.

    Raises :class:`ProtocolError` for an unknown version or kind, a bad header, or a payload
    whose size does not match its declared shape and dtype.
    """
    if not parts:
        raise ProtocolError("empty multipart message")
    try:
        header = json.loads(bytes(_buffer(parts[0])))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"message header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"wire version {header.get('v')!r}, expected {VERSION}")
    kind = header.pop("kind", None)
    if kind not in DATA_KINDS and kind not in CONTROL_KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    specs = header.pop("arrays", [])
    header.pop("v")
    if len(specs) != len(parts) - 1:
        raise ProtocolError(f"{kind}: header declares {len(specs)} payload(s), {len(parts) - 1} arrived")
    arrays = [_array(spec, part, kind) for spec, part in zip(specs, parts[1:])]
    return Message(kind, header, arrays)


def _buffer(part: Any) -> memoryview:
    return memoryview(part.buffer if hasattr(part, "buffer") else part)


def _array(spec: Any, part: Any, kind: str) -> np.ndarray:
    try:
        shape, dtype_name = tuple(int(d) for d in spec[0]), str(spec[1])
    except (TypeError, ValueError, IndexError) as e:
        raise ProtocolError(f"{kind}: bad array spec {spec!r}") from e
    if dtype_name not in _ALLOWED_DTYPES or any(d < 0 for d in shape):
        raise ProtocolError(f"{kind}: bad array spec {spec!r}")
    dtype = np.dtype(dtype_name)
    buf = _buffer(part)
    expected = math.prod(shape) * dtype.itemsize
    if buf.nbytes != expected:
        raise ProtocolError(f"{kind}: payload of {buf.nbytes} bytes, shape {shape} {dtype_name} needs {expected}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def eos(count: int, **extra: Any) -> Message:
    return Message(EOS, {"count": count, **extra})


def control(kind: str, stage: str, **fields: Any) -> Message:
    if kind not in CONTROL_KINDS:
        raise ProtocolError(f"{kind!r} is not a control kind")
    return Message(kind, {"stage": stage, **fields})
