"""Shared helpers of the media tests: run a source through a sink, read a file back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr_stream.config import DecodeConfig, EncodeConfig
from vsr_stream.media import PacketItem, SourceInfo, VideoFrameItem, open_sink, open_source


def read_items(path: str | Path, strict: bool = True) -> tuple[SourceInfo, list[VideoFrameItem], list[PacketItem]]:
    """Everything a source yields, split into frames and packets."""
    with open_source(str(path), DecodeConfig(strict=strict)) as source:
        items = list(source.items())
    frames = [i for i in items if isinstance(i, VideoFrameItem)]
    return source.info, frames, [i for i in items if isinstance(i, PacketItem)]


def transcode(src: Path, dst: Path, order: str = "demux", info: SourceInfo | None = None, **encode) -> tuple[SourceInfo, list[VideoFrameItem], list[PacketItem]]:
    """Source -> sink at scale 1. ``order``: 'demux' (as yielded), 'packets_first' or
    'frames_first'. ``info`` replaces the SourceInfo handed to the sink."""
    source_info, frames, packets = read_items(src)
    sink = open_sink(str(dst), EncodeConfig(**encode), info or source_info, 1)
    try:
        for item in _ordered(order, frames, packets, src):
            (sink.write_frame if isinstance(item, VideoFrameItem) else sink.write_packet)(item)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return source_info, frames, packets


def _ordered(order, frames, packets, src):
    if order == "packets_first":
        return [*packets, *frames]
    if order == "frames_first":
        return [*frames, *packets]
    with open_source(str(src), DecodeConfig()) as source:
        return list(source.items())


def demuxed(path: str | Path, kind: str) -> list[tuple[int | None, int | None, Fraction, bytes]]:
    """(pts, dts, time_base, bytes) of every non-empty packet of the first ``kind`` stream."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pts, p.dts, p.time_base, bytes(p)) for p in container.demux(stream) if p.size]


def frame_times(frames: list[VideoFrameItem]) -> list[Fraction]:
    """Presentation times in seconds."""
    return [f.pts * f.time_base for f in frames]


def arrays_equal(a: list[VideoFrameItem], b: list[VideoFrameItem]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x.array, y.array) for x, y in zip(a, b))


def flip_bytes(path: Path, at: int, count: int = 16) -> None:
    """Invert ``count`` bytes of ``path`` starting at byte ``at``."""
    data = bytearray(path.read_bytes())
    for i in range(at, min(at + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float) -> None:
    """Keep the first ``fraction`` of ``path``."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
