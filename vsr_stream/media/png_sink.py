"""A folder of PNGs as the output: one file per frame, each at its own size, 16-bit arrays as
16-bit PNGs. Written into a hidden sibling folder and renamed into place at close.
Names: the input image's name with ``.png`` for image sources, else ``frame_000000.png``."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr_stream.errors import SinkError
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.sink_common import check_array, sink_error, temp_sibling
from vsr_stream.media.urls import error_text

log = logging.getLogger(__name__)


def encode_png(array: np.ndarray) -> bytes:
    """(H, W, 3) uint8/uint16 RGB as PNG bytes (8 or 16 bits per sample)."""
    wide = array.dtype == np.uint16
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb48le" if wide else "rgb24")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height = array.shape[1], array.shape[0]
    ctx.pix_fmt = "rgb48be" if wide else "rgb24"
    ctx.time_base = frame.time_base = Fraction(1)
    frame.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


class PngFolderSink:
    """See :func:`vsr_stream.media.sink.open_sink`."""

    def __init__(self, path: str, source: SourceInfo, overwrite: bool) -> None:
        self.frames_written = 0
        self.packets_written = 0
        self.packets_dropped = 0
        self.resized_frames = 0
        self._final = Path(path.rstrip("/" + os.sep) or path)
        self._tmp = temp_sibling(self._final)
        self._overwrite, self._kind = overwrite, source.kind
        self._names: set[str] = set()
        self._state = "open"
        try:
            self._tmp.mkdir()
        except OSError as e:
            raise sink_error(e, f"cannot create the folder {self._tmp} for the PNG output: {error_text(e)}") from e

    def write_frame(self, item: VideoFrameItem) -> None:
        """Write one frame as a PNG named after the input image (or its index)."""
        self._require_open()
        check_array(item.array)
        name = self._name(item)
        try:
            (self._tmp / name).write_bytes(encode_png(item.array))
        except (av.error.FFmpegError, OSError) as e:
            raise sink_error(e, f"{self._final}: writing {name} failed: {error_text(e)}") from e
        self.frames_written += 1

    def _name(self, item: VideoFrameItem) -> str:
        name = f"{Path(item.name).stem}.png" if self._kind == "images" and item.name else f"frame_{item.index:06d}.png"
        if name in self._names:
            raise SinkError(errno.EEXIST, f"{self._final}: two frames map to {name} (input images differing only in extension?)")
        self._names.add(name)
        return name

    def write_packet(self, item: PacketItem) -> None:
        """Count a passthrough packet: audio and subtitles cannot go into PNGs."""
        self._require_open()
        if self.packets_dropped == 0:
            log.warning("%s: PNG folder output drops passthrough streams (audio/subtitles); counting the packets", self._final)
        self.packets_dropped += 1

    def close(self) -> None:
        """Move the finished folder into place (replacing an empty or, with overwrite, any
        existing folder)."""
        self._require_open()
        try:
            self._publish()
        except SinkError:
            raise
        except OSError as e:
            raise sink_error(e, f"{self._final}: moving the finished PNGs into place failed: {error_text(e)}") from e
        self._state = "closed"
        if self.packets_dropped:
            log.warning("%s: %d passthrough packet(s) were not written (PNG output)", self._final, self.packets_dropped)
        log.info("wrote %d PNG(s) to %s", self.frames_written, self._final)

    def _publish(self) -> None:
        old = None
        if self._final.exists():
            if any(self._final.iterdir()) and not self._overwrite:
                raise SinkError(errno.ENOTEMPTY, f"{self._final} is not empty (overwrite is off)")
            old = temp_sibling(self._final, "old")
            os.replace(self._final, old)
        os.replace(self._tmp, self._final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Remove the temporary folder. Never raises; a no-op after close() or abort()."""
        if self._state != "open":
            return
        self._state = "aborted"
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _require_open(self) -> None:
        if self._state != "open":
            raise SinkError(f"{self._final}: sink already {self._state}")
