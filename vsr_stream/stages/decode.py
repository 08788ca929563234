"""Decode stage: a source URL or path → frames and passthrough packets.

Receives: nothing (a source; starts on the supervisor's START).
Emits: STREAMS then PACKET messages on 'packets' (to encode), FRAME (LR) on 'frames' (to classify).
Connects: classify_in, encode_in. Queue policy: block on a full queue (lossless).
"""

from __future__ import annotations

from typing import Any, Iterator

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.media.source import Source, open_source
from vsr_stream.stage import Out, SourceStage
from vsr_stream.stages.frames import frame_message, packet_message


class DecodeStage(SourceStage):
    name = "decode"

    def __init__(self, cfg: PipelineConfig, source_url: str) -> None:
        self.cfg = cfg
        self.url = source_url
        self.source: Source | None = None
        self.frames = 0
        self.packets = 0

    def setup(self) -> None:
        self.source = open_source(self.url, self.cfg.decode)

    def produce(self) -> Iterator[Out]:
        assert self.source is not None
        yield "packets", m.Message(m.STREAMS, {"source": self.source.info.to_wire()})
        for item in self.source.items():
            if isinstance(item, VideoFrameItem):
                self.frames += 1
                yield "frames", frame_message(item)
            else:
                self.packets += 1
                yield "packets", packet_message(item)

    def flush(self) -> Iterator[Out]:
        yield "frames", m.eos(self.frames, path="frames")
        yield "packets", m.eos(self.packets, path="packets")

    def teardown(self, ok: bool) -> None:
        if self.source is not None:
            self.source.close()

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "packets": self.packets}
