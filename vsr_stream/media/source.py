"""open_source: any supported input as one iterator of frames and passthrough packets.

Inputs: a video file or URL (any container FFmpeg reads), a live stream (``rtsp://``, ...:
reconnects, see :mod:`~vsr_stream.media.live_source`), a single image, a folder of images, an
image glob or an image printf pattern. Every failure is a SourceError whose
message names the input (password redacted) and says what was expected.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from typing import Protocol

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import SourceError
from vsr_stream.media.image_source import ImageSource, is_pattern, list_images
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.live_source import LiveSource
from vsr_stream.media.urls import is_live_url, redact_url
from vsr_stream.media.video_source import VideoSource

log = logging.getLogger(__name__)


class Source(Protocol):
    """An opened input. ``items()`` yields VideoFrameItem (RGB, see its contract) and
    PacketItem (passthrough streams) in demux order, once; ``close()`` is idempotent."""

    info: SourceInfo

    def items(self) -> Iterator[VideoFrameItem | PacketItem]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


def open_source(url: str, cfg: DecodeConfig) -> Source:
    """Open ``url`` for decoding. A video file is decoded up to its first frame here, so an
    input that cannot be decoded fails now rather than mid-pipeline.

    Raises SourceError: missing (errno ENOENT), empty, unreadable, not a video, no video
    stream, damaged (cfg.strict) or truncated input.
    """
    url = os.fspath(url)
    if "://" not in url:
        _check_local(url)
    paths = list_images(url) if "://" not in url else None
    if is_live_url(url):
        source: Source = LiveSource(url, cfg)
    else:
        source = ImageSource(url, paths) if paths else VideoSource(url, cfg)
    video = source.info.video
    log.info("opened %s: %s %dx%d %s, %d passthrough stream(s)", redact_url(url), source.info.kind, video.width, video.height, video.pix_fmt, len(source.info.passthrough))
    return source


def _check_local(path: str) -> None:
    if os.path.isdir(path) or (is_pattern(path) and not os.path.exists(path)):
        return
    if not os.path.exists(path):
        raise SourceError(errno.ENOENT, f"input not found: {path} (expected a video file, an image, a folder of images, a glob or a printf pattern)")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise SourceError(f"{path}: file is empty (expected a video or image file)")
