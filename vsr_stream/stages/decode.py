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
from vsr_stream.config import PipelineConfig
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.media.source import Source, open_source
from vsr_stream.stage import Out, SourceStage
from vsr_stream.stages.frames import frame_message, packet_message
from vsr_stream.stages.ingest import Ingest

_WAIT_S = 0.1  # longest wait for a live item before the run loop checks for STOP


class DecodeStage(SourceStage):
    name = "decode"

    def __init__(self, cfg: PipelineConfig, source_url: str) -> None:
        self.cfg = cfg
        self.url = source_url
        self.source: Source | None = None
        self.ingest: Ingest | None = None
        self.frames = 0
        self.packets = 0
        self.first_s: Fraction | None = None  # time of the first frame, for max_duration_s

    def setup(self) -> None:
        self.source = open_source(self.url, self.cfg.decode)
        if self.source.info.live:
            d = self.cfg.decode
            self.ingest = Ingest(self.source, d.live_policy, d.latency_budget_ms)

    def produce(self) -> Iterator[Out | None]:
        assert self.source is not None
        yield "packets", m.Message(m.STREAMS, {"source": self.source.info.to_wire()})
        for entry in self._ingested():
            if entry is None:
                yield None  # nothing arrived yet: lets the run loop check for STOP
                continue
            item, ingest_s = entry
            if not isinstance(item, VideoFrameItem):
                self.packets += 1
                yield "packets", packet_message(item)
                continue
            if self._limit_reached(item):
                return
            index, self.frames = self.frames, self.frames + 1
            yield "frames", frame_message(replace(item, index=index))  # numbered after ingest drops
            yield "packets", m.Message(m.INGEST, {"index": index, "ingest_s": ingest_s})

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
        d = self.cfg.decode
        if d.max_frames is not None and self.frames >= d.max_frames:
            return True
        if d.max_duration_s is None or item.pts is None or item.time_base is None:
            return False
        at = item.pts * item.time_base
        self.first_s = at if self.first_s is None else self.first_s
        return at - self.first_s >= Fraction(d.max_duration_s)

    def flush(self) -> Iterator[Out]:
        yield "frames", m.eos(self.frames, path="frames")
        yield "packets", m.eos(self.packets, path="packets")

    def teardown(self, ok: bool) -> None:
        if self.ingest is not None:
            self.ingest.stop(self.cfg.decode.read_timeout_ms / 1000 + 1)
            if self.ingest.thread.is_alive():
                return  # still inside a read; the daemon reader closes its source when that returns
        if self.source is not None:
            self.source.close()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames, "packets": self.packets}
        if self.ingest is not None:
            out.update(self.ingest.stats(), reconnects=getattr(self.source, "reconnects", 0),
                       rebase_dropped_packets=getattr(self.source, "packets_dropped", 0))
        return out
