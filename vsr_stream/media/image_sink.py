"""A single image file as the output (``photo_x4.png``, ``.jpg``, ``.webp``, ``.tif``, ``.bmp``):
exactly one frame, written under a temporary name and renamed into place at close.
16-bit frames stay 16-bit in PNG and TIFF; other formats take 8 bits."""

from __future__ import annotations

import errno
import io
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from vsr_stream.errors import SinkError
from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.png_sink import encode_png
from vsr_stream.media.sink_common import check_array, sink_error, temp_sibling
from vsr_stream.media.urls import error_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def encode_image(array: np.ndarray, suffix: str) -> bytes:
    """(H, W, 3) uint8/uint16 RGB encoded for the file type named by ``suffix``."""
    if suffix == ".png":
        return encode_png(array)
    if array.dtype == np.uint16:
        log.info("%s keeps 8 bits per sample; the 16-bit frame is reduced", suffix)
        array = (array >> 8).astype(np.uint8)
    buf = io.BytesIO()
    options = {"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}
    Image.fromarray(array, "RGB").save(buf, format=Image.registered_extensions()[suffix], **options)
    return buf.getvalue()


class ImageFileSink:
    """See :func:`vsr_stream.media.sink.open_sink`."""

    def __init__(self, path: str) -> None:
        self._final = Path(path)
        self._tmp = temp_sibling(self._final)
        self.frames_written = self.packets_written = self.packets_dropped = self.resized_frames = 0
        self._state = "open"

    def write_frame(self, item: VideoFrameItem) -> None:
        if self.frames_written:
            raise SinkError(errno.EINVAL, f"{self._final} is a single image but the input has more than one "
                                          f"frame; give a folder (e.g. {self._final.with_suffix('')}/) instead")
        check_array(item.array)
        try:
            self._tmp.write_bytes(encode_image(item.array, self._final.suffix.lower()))
        except OSError as e:
            raise sink_error(e, f"{self._final}: writing the image failed: {error_text(e)}") from e
        self.frames_written = 1

    def write_packet(self, item: PacketItem) -> None:
        if self.packets_dropped == 0:
            log.warning("%s: an image output drops passthrough streams (audio/subtitles); counting them",
                        self._final)
        self.packets_dropped += 1

    def close(self) -> None:
        if self.frames_written == 0:
            raise SinkError(errno.ENODATA, f"{self._final}: the input had no frame to write")
        try:
            os.replace(self._tmp, self._final)
        except OSError as e:
            raise sink_error(e, f"{self._final}: moving the image into place failed: {error_text(e)}") from e
        self._state = "closed"

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._tmp.unlink(missing_ok=True)
