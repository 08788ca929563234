"""Decode stage: a source URL or path → frames and passthrough packets.

Receives: nothing (a source; starts on the supervisor's START; a graceful STOP ends it early, with EOS).
Emits: FRAME (LR) on 'frames' (to classify); STREAMS, then PACKET and INGEST (when each frame
entered, for the latency figures) on 'packets' (to encode).
Connects: classify_in, encode_in. Queue policy: block on a full queue (lossless); a live source
goes through an :class:`~vsr_stream.stages.ingest.Ingest` queue, the only place frames may be dropped.
"""

from __future__ import annotations

import time
from dataclasses import replace
from fractions import Fraction
from typing import Any, Iterator

from vsr_stream import messages as m
from vsr_stream.config import DecodeConfig, PipelineConfig
from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.source import Source, open_source
from vsr_stream.stage import Out, SourceStage
from vsr_stream.stages.frames import frame_message, packet_message
from vsr_stream.stages.ingest import Ingest

_WAIT_S = 0.1  # longest wait for a live item before the run loop checks for STOP


class DecodeFeed:
    """A source's items as ``(item, ingest time)`` within the decode limits: the one place both the
    decode stage and the fused loop take their input from.

    A live source goes through an :class:`Ingest` queue with the configured policy (the only
    place frames may be dropped); with ``read_ahead`` a file source goes through one with the
    lossless ``block`` policy, so decoding runs in its own thread ahead of the consumer. Iteration
    ends at the end of the source or at ``max_frames`` / ``max_duration_s``; :meth:`get` returns
    None when nothing arrived within the wait (live), so the caller can check for a stop.
    """

    def __init__(self, source: Source, cfg: DecodeConfig, read_ahead: bool = False) -> None:
        self.source, self.cfg = source, cfg
        self.ingest: Ingest | None = None
        if source.info.live:
            self.ingest = Ingest(source, cfg.live_policy, cfg.latency_budget_ms)
        elif read_ahead:
            self.ingest = Ingest(source, "block", cfg.latency_budget_ms)
        self.frames = 0
        self.first_s: Fraction | None = None  # time of the first frame, for max_duration_s

    def entries(self) -> Iterator[tuple[VideoFrameItem | PacketItem, float] | None]:
        """Items with their ingest time (frames numbered from 0 after ingest drops), or None
        while a live source has nothing new."""
        for entry in self._ingested():
            if entry is not None and isinstance(entry[0], VideoFrameItem):
                item, at = entry
                if self._limit_reached(item):
                    return
                entry = replace(item, index=self.frames), at
                self.frames += 1
            yield entry

    def _ingested(self) -> Iterator[tuple[Any, float] | None]:
        if self.ingest is None:
            yield from ((item, time.monotonic()) for item in self.source.items())
            return
        self.ingest.start()
        while True:
            try:
                yield self.ingest.get(_WAIT_S)
            except EOFError:
                return

    def _limit_reached(self, item: VideoFrameItem) -> bool:
        if self.cfg.max_frames is not None and self.frames >= self.cfg.max_frames:
            return True
        if self.cfg.max_duration_s is None or item.pts is None or item.time_base is None:
            return False
        at = item.pts * item.time_base
        self.first_s = at if self.first_s is None else self.first_s
        return at - self.first_s >= Fraction(self.cfg.max_duration_s)

    def close(self) -> None:
        """Stop the reader (if any) and close the source; a reader still inside a network read
        closes the source itself when the read returns (within the read timeout)."""
        if self.ingest is not None and self.ingest.thread.ident is not None:
            self.ingest.stop(self.cfg.read_timeout_ms / 1000 + 1)
            if self.ingest.thread.is_alive():
                return
        self.source.close()

    def stats(self) -> dict[str, Any]:
        """Ingest figures of a live source (drops, queue peak, reconnects); empty for a file."""
        if self.ingest is None or not self.source.info.live:
            return {}
        return {**self.ingest.stats(), "reconnects": getattr(self.source, "reconnects", 0),
                "rebase_dropped_packets": getattr(self.source, "packets_dropped", 0)}


class DecodeStage(SourceStage):
    name = "decode"

    def __init__(self, cfg: PipelineConfig, source_url: str) -> None:
        self.cfg = cfg
        self.url = source_url
        self.feed: DecodeFeed | None = None
        self.packets = 0

    @property
    def frames(self) -> int:
        return self.feed.frames if self.feed is not None else 0

    def setup(self) -> None:
        self.feed = DecodeFeed(open_source(self.url, self.cfg.decode), self.cfg.decode)

    def produce(self) -> Iterator[Out | None]:
        assert self.feed is not None
        yield "packets", m.Message(m.STREAMS, {"source": self.feed.source.info.to_wire()})
        for entry in self.feed.entries():
            if entry is None:
                yield None  # nothing arrived yet: lets the run loop check for STOP
                continue
            item, ingest_s = entry
            if not isinstance(item, VideoFrameItem):
                self.packets += 1
                yield "packets", packet_message(item)
                continue
            yield "frames", frame_message(item)
            yield "packets", m.Message(m.INGEST, {"index": item.index, "ingest_s": ingest_s})

    def flush(self) -> Iterator[Out]:
        yield "frames", m.eos(self.frames, path="frames")
        yield "packets", m.eos(self.packets, path="packets")

    def teardown(self, ok: bool) -> None:
        if self.feed is not None:
            self.feed.close()

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "packets": self.packets, **(self.feed.stats() if self.feed else {})}
