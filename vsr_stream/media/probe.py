"""Describe an opened PyAV input: the upscaled video stream, the passthrough streams, the
container's metadata and chapters, as the plain values of :mod:`vsr_stream.media.items`."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av
from av.stream import Discard, Disposition

from vsr_stream.media.colour import unspecified_to_none
from vsr_stream.media.frames import bit_depth_of
from vsr_stream.media.items import StreamInfo, VideoInfo

log = logging.getLogger(__name__)

_UNSPECIFIED = {"colorspace": 2, "color_range": 0, "color_primaries": 2, "color_trc": 2}
PASSTHROUGH_TYPES = ("audio", "subtitle", "data", "attachment")


def pick_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first video stream that is a moving picture (cover art, ``attached_pic``, is not)."""
    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:
            return stream
    return None


def passthrough_streams(container: av.container.InputContainer, video: av.stream.Stream) -> list[av.stream.Stream]:
    """Every stream besides ``video`` that is copied untouched; logs the ones that are not
    (another video stream; a stream the demuxer itself discards, such as the chapter track
    of an MP4, whose chapters travel as chapters)."""
    kept = []
    for stream in container.streams:
        if stream.index == video.index:
            continue
        if stream.type not in PASSTHROUGH_TYPES:
            log.warning("stream %d (%s) is neither upscaled nor passed through", stream.index, stream.type)
        elif stream.discard == Discard.all:
            log.info("stream %d (%s) is marked for discard by the demuxer (e.g. an MP4 chapter track); not passed through", stream.index, stream.type)
        else:
            kept.append(stream)
    return kept


def disposition_names(value: int) -> list[str]:
    """FFmpeg disposition flags as their names, e.g. ``['default', 'forced']``."""
    return [flag.name for flag in Disposition if flag.value & value]


def video_info(stream: av.video.stream.VideoStream, first: av.VideoFrame | None) -> VideoInfo:
    """VideoInfo of ``stream``; the first decoded frame, when there is one, gives the real
    size, pixel format, colour tags and display rotation (the stream's parameters can lag)."""
    ctx = stream.codec_context
    pic = first if first is not None else ctx
    fmt = first.format if first is not None else av.VideoFormat(ctx.pix_fmt or "yuv420p")
    colour = {name: unspecified_to_none(int(getattr(pic, name)), value) for name, value in _UNSPECIFIED.items()}
    return VideoInfo(
        width=pic.width,
        height=pic.height,
        time_base=stream.time_base,
        frame_rate=stream.average_rate or stream.guessed_rate,
        pix_fmt=fmt.name,
        bit_depth=bit_depth_of(fmt),
        rotation_deg=float(first.rotation) if first is not None else 0.0,
        sample_aspect_ratio=_sar(stream),
        frame_count=stream.frames or None,
        codec_name=ctx.name,
        language=stream.language,
        metadata=dict(stream.metadata),
        disposition=disposition_names(stream.disposition),
        **colour,
    )


def _sar(stream: av.video.stream.VideoStream) -> Fraction | None:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return sar if sar else None


def stream_info(stream: av.stream.Stream) -> StreamInfo:
    """StreamInfo of a passthrough stream."""
    ctx = stream.codec_context
    return StreamInfo(
        index=stream.index,
        type=stream.type,
        codec_name=ctx.name if ctx is not None else None,
        time_base=stream.time_base or Fraction(1, 1000),
        language=stream.language,
        metadata=dict(stream.metadata),
        disposition=disposition_names(stream.disposition),
    )


def chapters(container: av.container.InputContainer) -> list[dict[str, Any]]:
    """The container's chapters as JSON-able dicts (``time_base`` as ``[num, den]``)."""
    return [
        {
            "id": ch["id"],
            "start": ch["start"],
            "end": ch["end"],
            "time_base": [ch["time_base"].numerator, ch["time_base"].denominator],
            "metadata": dict(ch["metadata"]),
        }
        for ch in container.chapters()
    ]


def declared_end_s(stream: av.stream.Stream) -> Fraction | None:
    """End time (s) of the stream as the container declares it: Matroska's per-track
    ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), else start + duration; None if undeclared."""
    text = stream.metadata.get("DURATION")
    if text:
        try:
            h, m, s = text.split(":")
            return int(h) * 3600 + int(m) * 60 + Fraction(s)
        except ValueError:
            log.debug("stream %d: unreadable DURATION tag %r", stream.index, text)
    if stream.duration and stream.time_base:
        return ((stream.start_time or 0) + stream.duration) * stream.time_base
    return None
