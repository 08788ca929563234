"""open_sink / check_output: where the HR frames go.

A path with a container extension (.mp4, .mkv, .mov, .webm, .avi, .ts, ...) is a video file;
a path ending in '/', an existing folder, or a path without extension is a folder of PNGs.
Outputs are written under a hidden temporary name and renamed into place by ``close()``;
``abort()`` removes them. Exceptions: the recording of a live input (.mkv or .ts) is written in
place and kept, and an ``rtsp://`` output is published to that server. Every failure is a SinkError.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

import av

from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError
from vsr_stream.media.file_sink import LIVE_FILE_FORMATS, FileSink
from vsr_stream.media.image_sink import IMAGE_SUFFIXES, ImageFileSink
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.png_sink import PngFolderSink
from vsr_stream.media.urls import redact_url, scheme_of

STREAM_SCHEMES = frozenset({"rtsp", "rtsps"})


class Sink(Protocol):
    """An opened output. ``write_frame`` takes HR RGB frames (uint8/uint16), ``write_packet``
    passthrough packets; ``close()`` finalises and publishes (SinkError on failure, then call
    ``abort()``); ``abort()`` removes everything written and never raises."""

    frames_written: int
    packets_written: int
    packets_dropped: int  # passthrough packets the output cannot hold (PNG folders), counted
    resized_frames: int  # frames fitted to the output size fixed by the first frame

    def write_frame(self, item: VideoFrameItem) -> None: ...

    def write_packet(self, item: PacketItem) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def is_image_output(path: str) -> bool:
    """A single image file (one frame): .png, .jpg, .webp, .tif, .bmp."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_folder_output(path: str) -> bool:
    """A PNG folder: ends with a separator, is an existing folder, or has no extension."""
    return path.endswith(("/", os.sep)) or os.path.isdir(path) or not Path(path).suffix


def check_output(path: str, overwrite: bool, live: bool = False) -> None:
    """Fail early with SinkError if ``path`` cannot be written: it exists (and overwrite is
    off), its folder is missing or not writable, or its extension names no video container;
    a URL that is not ``rtsp://``; for a ``live`` input, anything but .mkv, .ts or ``rtsp://``."""
    scheme = scheme_of(path)
    if scheme not in (None, "file"):
        if scheme not in STREAM_SCHEMES:
            raise SinkError(f"{redact_url(path)}: cannot publish to {scheme}:// (expected a file, a folder or rtsp://)")
        return
    target = Path(path)
    _check_parent(target.parent, path)
    if is_folder_output(path):
        _check_folder(target, overwrite)
        return
    if target.exists() and not overwrite:
        raise SinkError(errno.EEXIST, f"output exists: {redact_url(path)} (set overwrite to replace it)")
    name = _check_muxer(path)
    if live and name not in LIVE_FILE_FORMATS:
        raise SinkError(f"{redact_url(path)}: a live recording is written in place and must stay readable if the run "
                        f"is killed: use .mkv or .ts (or an rtsp:// URL), not {Path(path).suffix or 'a folder'!r}")


def _check_parent(parent: Path, path: str) -> None:
    if not parent.is_dir():
        raise SinkError(errno.ENOENT, f"output folder {parent} does not exist (for output {redact_url(path)})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SinkError(errno.EACCES, f"output folder {parent} is not writable (for output {redact_url(path)})")


def _check_folder(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise SinkError(errno.ENOTDIR, f"{target} exists and is not a folder (a path without extension is a PNG folder output)")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise SinkError(errno.ENOTEMPTY, f"output folder {target} is not empty (set overwrite to replace its contents)")


def _check_muxer(path: str) -> str:
    try:
        container = av.open(path, "w")  # only picks the muxer; no file is created yet
    except ValueError as e:
        raise SinkError(f"{redact_url(path)}: no video container for extension {Path(path).suffix!r} (expected .mp4, .mkv, .mov, .webm, .avi, .ts, ... or a folder for PNGs)") from e
    name = container.format.name
    container.close()
    if name == "image2" and not is_image_output(path):
        raise SinkError(f"{redact_url(path)}: image type {Path(path).suffix!r} is not supported "
                        f"(expected one of {sorted(IMAGE_SUFFIXES)}, or a folder for PNG output)")
    return name


def open_sink(path: str, cfg: EncodeConfig, source: SourceInfo, scale: int) -> Sink:
    """Open the output for the HR frames of ``source`` (upscaled ``scale`` times).

    File outputs encode per ``cfg`` (see :mod:`vsr_stream.media.codecs`) and copy the
    source's passthrough streams, metadata, chapters, colour tags, rotation and aspect ratio.
    Raises SinkError (see :func:`check_output`; also a passthrough stream the container cannot
    hold, or an encoder/pixel format that does not exist)."""
    path = os.fspath(path)
    check_output(path, cfg.overwrite, source.live)
    if scheme_of(path) not in (None, "file"):
        return FileSink(path, cfg, source, scale)
    if is_folder_output(path):
        return PngFolderSink(path, source, cfg.overwrite)
    if is_image_output(path):
        return ImageFileSink(path)
    return FileSink(path, cfg, source, scale)
