"""Encode stage: HR frames and passthrough packets → the output file, stream or PNG folder.

Receives on encode_in: STREAMS then PACKET (from decode), FRAME (HR, in order, from stitch).
Receives INGEST notes from decode (frame index, ingest time) for the ingest-to-encode latency.
Emits: PROGRESS to the supervisor per frame. Expects two EOS: decode's packets, stitch's frames.
Binds: encode_in (PULL fan-in). The output is opened when the source description arrives,
written under a temporary name, and renamed only after a clean finish (a live recording is
written in place and kept; an rtsp:// output is published as it goes).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import ProtocolError
from vsr_stream.media.items import SourceInfo
from vsr_stream.media.sink import Sink, open_sink
from vsr_stream.runtime.latency import LatencyMeter
from vsr_stream.stage import Out, Stage
from vsr_stream.stages.frames import frame_item, packet_item


def finish_sink(sink: Sink, ok: bool) -> None:
    """Publish the output after a clean run (``close``); otherwise, or if closing fails, remove
    it (``abort``) so no partial output is left. Re-raises the close failure (a SinkError)."""
    if not ok:
        sink.abort()
        return
    try:
        sink.close()
    except BaseException:
        sink.abort()
        raise


def sink_counters(sink: Sink) -> dict[str, int]:
    """What the sink wrote and left out: the encode stats the run report is made from."""
    return {k: getattr(sink, k) for k in ("frames_written", "packets_written", "packets_dropped", "resized_frames")}


class EncodeStage(Stage):
    name = "encode"
    eos_expected = 2

    def __init__(self, cfg: PipelineConfig, output: str) -> None:
        self.cfg = cfg
        self.output = output
        self.sink: Sink | None = None
        self.held: list[m.Message] = []
        self.frames = 0
        self.packets = 0
        self.busy_s = 0.0
        self.next_index = 0
        self.expected: dict[str, int] = {}
        self.latency = LatencyMeter()

    def process(self, msg: m.Message) -> Iterator[Out]:
        if msg.kind == m.STREAMS:
            self._open(SourceInfo.from_wire(msg["source"]))
            held, self.held = self.held, []
            for h in held:
                yield from self.process(h)
        elif self.sink is None:
            self.held.append(msg)
        elif msg.kind == m.FRAME:
            yield from self._frame(msg)
        elif msg.kind == m.PACKET:
            self._timed(self.sink.write_packet, packet_item(msg))
            self.packets += 1
        elif msg.kind == m.INGEST:
            self.latency.ingested(msg["index"], msg["ingest_s"])
        else:
            raise ProtocolError(f"encode cannot handle {msg.kind}")

    def _open(self, info: SourceInfo) -> None:
        if self.sink is not None:
            raise ProtocolError("encode received the source description twice")
        self.sink = open_sink(self.output, self.cfg.encode, info, self.cfg.scale)

    def _frame(self, msg: m.Message) -> Iterator[Out]:
        if msg["index"] != self.next_index:
            raise ProtocolError(f"encode expected frame {self.next_index}, got {msg['index']}")
        self.next_index += 1
        self._timed(self.sink.write_frame, frame_item(msg))
        self.latency.encoded(msg["index"], time.monotonic())
        self.frames += 1
        yield "control", m.control(m.PROGRESS, self.name, frames=self.frames)

    def _timed(self, fn: Any, arg: Any) -> None:
        t0 = time.perf_counter()
        fn(arg)
        self.busy_s += time.perf_counter() - t0

    def on_eos(self, msg: m.Message) -> None:
        path = msg.header.get("path")
        if path not in ("frames", "packets") or path in self.expected:
            raise ProtocolError(f"encode: unexpected EOS {msg.header}")
        self.expected[path] = msg["count"]

    def drained(self) -> bool:
        return not self.held

    def flush(self) -> Iterator[Out]:
        got = {"frames": self.frames, "packets": self.packets}
        if self.sink is None:
            raise ProtocolError("encode: the source description never arrived")
        if got != self.expected:
            raise ProtocolError(f"encode: upstream sent {self.expected}, {got} arrived")
        return iter(())

    def teardown(self, ok: bool) -> None:
        if self.sink is not None:
            t0 = time.perf_counter()
            finish_sink(self.sink, ok)
            self.busy_s += time.perf_counter() - t0

    def stats(self) -> dict[str, Any]:
        extra = sink_counters(self.sink) if self.sink is not None else {}
        return {"frames": self.frames, "packets": self.packets, "busy_s": self.busy_s, **extra,
                **self.latency.summary()}
