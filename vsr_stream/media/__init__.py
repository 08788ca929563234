"""Media I/O: open a source (video file, image, image folder or sequence) as frames and
passthrough packets, and write frames plus passthrough packets to a file or a PNG folder.

The decode and encode stages wrap :func:`open_source` and :func:`open_sink`; nothing here
knows about ZeroMQ. :class:`SourceInfo` is what travels between them (``to_wire``).
"""

from __future__ import annotations

from vsr_stream.media.items import PacketItem, SourceInfo, StreamInfo, VideoFrameItem, VideoInfo
from vsr_stream.media.sink import Sink, check_output, open_sink
from vsr_stream.media.source import Source, open_source
from vsr_stream.media.urls import redact_url

__all__ = [
    "PacketItem",
    "Sink",
    "Source",
    "SourceInfo",
    "StreamInfo",
    "VideoFrameItem",
    "VideoInfo",
    "check_output",
    "open_sink",
    "open_source",
    "redact_url",
]
