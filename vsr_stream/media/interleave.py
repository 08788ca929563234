"""Hold passthrough packets until the video has reached their time.

The pipeline delivers passthrough packets straight from the demuxer while video frames
take the long way through upscaling, so packets arrive early by the pipeline's lag; holding
them until the video catches up gives the muxer an interleaved input (memory bounded by that
lag). Packets are released in time order, stable for equal times.
"""

from __future__ import annotations

import heapq
import itertools
from fractions import Fraction

from vsr_stream.media.items import PacketItem


def packet_time(item: PacketItem) -> Fraction | None:
    """Decode time of ``item`` in seconds (dts, else pts), None when it has neither."""
    ts = item.dts if item.dts is not None else item.pts
    return None if ts is None else ts * item.time_base


class PacketQueue:
    """Passthrough packets ordered by time; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[tuple[Fraction, int, PacketItem]] = []
        self._order = itertools.count()
        self._last_time = Fraction(-(10**12))

    def push(self, item: PacketItem) -> None:
        """Hold ``item``. A packet without timestamps goes right after the previous one."""
        t = packet_time(item)
        t = self._last_time if t is None else t
        self._last_time = t
        heapq.heappush(self._heap, (t, next(self._order), item))

    def pop_until(self, video_time: Fraction) -> list[PacketItem]:
        """Every held packet at or before ``video_time`` (seconds), oldest first."""
        out = []
        while self._heap and self._heap[0][0] <= video_time:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain(self) -> list[PacketItem]:
        """Every held packet, oldest first."""
        out = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return out

    def __len__(self) -> int:
        return len(self._heap)
