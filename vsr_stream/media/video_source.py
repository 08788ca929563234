"""A video file (any container FFmpeg reads) as frames of its first video stream plus the
untouched packets of every other stream, in demux order.

Strict mode (the default) opens the decoder with ``err_detect=explode`` so damage raises
instead of being concealed, and after the last packet checks the decoded frames against what
the container declared (frame count; Matroska's per-track DURATION), because a truncated
Matroska file otherwise just ends early without any error.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from fractions import Fraction

import av

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import SourceError
from vsr_stream.media import probe
from vsr_stream.media.frames import bit_depth_of, frame_to_rgb
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.urls import error_text, redact_url, scheme_of

log = logging.getLogger(__name__)

# Demuxers that "open" files which are not video at all (tty renders any .txt as frames).
_NOT_VIDEO_FORMATS = {"tty"}


def network_options(url: str, cfg: DecodeConfig) -> tuple[dict[str, str], tuple[float, float] | None]:
    """FFmpeg options and PyAV's (open, read) timeout in seconds for ``url``; nothing for local paths.

    Two layers, because either alone can miss a stall: FFmpeg's socket timeouts (microseconds)
    end a blocked read inside the protocol, PyAV's interrupt callback ends any blocking call."""
    scheme = scheme_of(url)
    if scheme is None or scheme == "file":
        return {}, None
    read_us = str(cfg.read_timeout_ms * 1000)
    options = {"rtsp_transport": cfg.rtsp_transport, "timeout": read_us} if scheme in ("rtsp", "rtsps") \
        else {"rw_timeout": read_us}
    return options, (cfg.open_timeout_ms / 1000, cfg.read_timeout_ms / 1000)


def open_container(url: str, cfg: DecodeConfig | None = None) -> av.container.InputContainer:
    """av.open for reading (with :func:`network_options` from ``cfg``), every failure as
    SourceError naming the input (password redacted)."""
    options, timeout = network_options(url, cfg) if cfg is not None else ({}, None)
    try:
        return av.open(url, "r", options=options, timeout=timeout)
    except (av.error.FFmpegError, OSError) as e:
        raise _open_error(url, e, timeout) from e


def _open_error(url: str, e: BaseException, timeout: tuple[float, float] | None) -> SourceError:
    shown = redact_url(url)
    if isinstance(e, av.error.FileNotFoundError):
        return SourceError(e.errno, f"input not found: {shown}")
    if timeout is not None:
        # A stalled server surfaces as a timeout, a refused connection or "invalid data": say what was tried.
        code = errno.ETIMEDOUT if isinstance(e, av.error.ExitError) else getattr(e, "errno", None)
        message = (f"{shown}: cannot open the stream (open timeout {timeout[0]:.1f} s, read timeout "
                   f"{timeout[1]:.1f} s): {error_text(e)}")
        return SourceError(code, message) if isinstance(code, int) and 0 < code < 4096 else SourceError(message)
    if isinstance(e, av.error.InvalidDataError):
        return SourceError(f"{shown}: not a readable media file (expected a video container FFmpeg can demux): {error_text(e)}")
    return SourceError(f"{shown}: cannot open input: {error_text(e)}")


class VideoSource:
    """Frames of the first video stream plus passthrough packets; see :func:`open_source`."""

    def __init__(self, url: str, cfg: DecodeConfig) -> None:
        self._url, self._strict = url, cfg.strict
        self._read_timeout_s = cfg.read_timeout_ms / 1000
        self._container = open_container(url, cfg)
        try:
            self._video = self._choose_video()
            self._configure_decoder(cfg.threads)
            self._passthrough = probe.passthrough_streams(self._container, self._video)
            self._index = 0
            self._stats = _DecodeStats()
            self._packets = self._container.demux()
            self._rest = self._stream_items()
            self._head = self._read_until_first_frame()
            self.info = self._describe()
        except BaseException:
            self.close()
            raise

    def _choose_video(self) -> av.video.stream.VideoStream:
        c = self._container
        if c.format.name in _NOT_VIDEO_FORMATS:
            raise SourceError(f"{redact_url(self._url)}: not a video (FFmpeg's {c.format.name!r} demuxer renders text as pictures)")
        stream = probe.pick_video_stream(c)
        if stream is None:
            found = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context else '?'}" for s in c.streams) or "no streams"
            raise SourceError(f"{redact_url(self._url)}: no video stream to upscale (found: {found})")
        if stream.codec_context is None:
            raise SourceError(f"{redact_url(self._url)}: no decoder for video stream {stream.index}")
        return stream

    def _configure_decoder(self, threads: int) -> None:
        ctx = self._video.codec_context
        ctx.thread_count = threads
        ctx.thread_type = "AUTO"
        if self._strict:
            ctx.options = {"err_detect": "explode"}

    def _describe(self) -> SourceInfo:
        return SourceInfo(
            url=self._url,
            kind="video",
            video=probe.video_info(self._video, self._first_frame),
            passthrough=tuple(probe.stream_info(s) for s in self._passthrough),
            container_metadata=dict(self._container.metadata),
            chapters=probe.chapters(self._container),
        )

    def _read_until_first_frame(self) -> list[VideoFrameItem | PacketItem]:
        """Items up to and including the first frame: it tells the real pixel format,
        colour tags and rotation, and a file that cannot decode fails at open."""
        self._first_frame = None
        head: list[VideoFrameItem | PacketItem] = []
        for item in self._rest:
            head.append(item)
            if isinstance(item, VideoFrameItem):
                break
        if self._first_frame is None:
            raise SourceError(f"{redact_url(self._url)}: the video stream holds no decodable frame")
        return head

    def items(self) -> Iterator[VideoFrameItem | PacketItem]:
        """Every frame (RGB) and passthrough packet, in demux order."""
        yield from self._head
        self._head = []
        yield from self._rest

    def _stream_items(self) -> Iterator[VideoFrameItem | PacketItem]:
        passthrough = {s.index for s in self._passthrough}
        while True:
            packet = self._next_packet()
            if packet is None:
                self._check_complete()
                return
            if packet.stream.index == self._video.index:
                yield from self._decode(packet)
            elif packet.stream.index in passthrough and not _is_end_marker(packet):
                if self._strict and packet.stream.type == "audio":
                    self._verify_audio(packet)
                yield _packet_item(packet)

    def _next_packet(self) -> av.Packet | None:
        try:
            return next(self._packets)
        except StopIteration:
            return None
        except av.error.ExitError as e:  # PyAV's read timeout interrupted the demuxer
            raise SourceError(errno.ETIMEDOUT, f"{redact_url(self._url)}: no data for {self._read_timeout_s:.1f} s "
                              f"after frame {self._index} (decode.read_timeout_ms)") from e
        except av.error.FFmpegError as e:
            raise SourceError(f"{redact_url(self._url)}: corrupt or truncated input after frame {self._index}: {error_text(e)}") from e

    def _verify_audio(self, packet: av.Packet) -> None:
        """Decode (and discard) a passthrough audio packet: copied packets are otherwise never
        checked, so damage inside the audio would pass through unnoticed."""
        if packet.stream.codec_context is None:
            return
        try:
            packet.decode()
        except av.error.FFmpegError as e:
            raise SourceError(f"{redact_url(self._url)}: corrupt audio in stream {packet.stream.index} "
                              f"near frame {self._index}: {error_text(e)}") from e

    def _decode(self, packet: av.Packet) -> Iterator[VideoFrameItem]:
        for frame in self._decode_frames(packet):
            if frame.is_corrupt and self._strict:
                raise SourceError(f"{redact_url(self._url)}: corrupt or truncated input at frame {self._index}: the decoder flagged the frame as corrupt")
            yield self._frame_item(frame)

    def _decode_frames(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.FFmpegError as e:
            if self._strict:
                raise SourceError(f"{redact_url(self._url)}: corrupt or truncated input at frame {self._index}: {error_text(e)}") from e
            log.warning("%s: skipped an undecodable packet near frame %d: %s", redact_url(self._url), self._index, error_text(e))
            return []

    def _frame_item(self, frame: av.VideoFrame) -> VideoFrameItem:
        if self._first_frame is None:
            self._first_frame = frame
            self._bit_depth = bit_depth_of(frame.format)
        try:
            array = frame_to_rgb(frame, self._bit_depth)
        except av.error.FFmpegError as e:
            raise SourceError(f"{redact_url(self._url)}: frame {self._index} ({frame.format.name}) cannot be converted to RGB: {error_text(e)}") from e
        time_base = frame.time_base or self._video.time_base
        item = VideoFrameItem(self._index, frame.pts, time_base, frame.duration or None, array)
        self._stats.count_frame(frame)
        self._index += 1
        return item

    def _check_complete(self) -> None:
        problem = self._stats.shortfall(self._video)
        if problem is None:
            return
        message = f"{redact_url(self._url)}: truncated input: {problem}"
        if self._strict:
            raise SourceError(message)
        log.warning("%s", message)

    def close(self) -> None:
        """Release the demuxer and decoder (idempotent)."""
        # Finish the generators first: their cleanup touches the container.
        for generator in (getattr(self, "_rest", None), getattr(self, "_packets", None)):
            if generator is not None:
                generator.close()
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_end_marker(packet: av.Packet) -> bool:
    """PyAV's empty end-of-stream packet (one per stream after the last real one)."""
    return packet.size == 0 and packet.pts is None and packet.dts is None


def _packet_item(packet: av.Packet) -> PacketItem:
    return PacketItem(
        stream_index=packet.stream.index,
        pts=packet.pts,
        dts=packet.dts,
        duration=packet.duration or None,
        time_base=packet.time_base,
        is_keyframe=packet.is_keyframe,
        data=bytes(packet),
    )


class _DecodeStats:
    """What the decode produced, to compare with what the container declared."""

    def __init__(self) -> None:
        self.frames = 0
        self.start: Fraction | None = None  # of the latest frame
        self.end: Fraction | None = None
        self.gap = Fraction(0)  # longest step between frame starts

    def count_frame(self, frame: av.VideoFrame) -> None:
        self.frames += 1
        if frame.pts is None or frame.time_base is None:
            return
        start = frame.pts * frame.time_base
        if self.start is not None:
            self.gap = max(self.gap, start - self.start)
        end = start + (frame.duration or 0) * frame.time_base
        self.start, self.end = start, end if self.end is None else max(self.end, end)

    def shortfall(self, stream: av.video.stream.VideoStream) -> str | None:
        """Why the decode fell short of the declaration, or None when it did not.

        Fewer frames than declared is fine when the video still reaches its declared end:
        an edit list may drop frames, and AVI declares time slots, not frames, for VFR."""
        declared_end = probe.declared_end_s(stream)
        if declared_end is not None and self._ends_by(declared_end, stream):
            return None
        if stream.frames > 0 and self.frames < stream.frames:
            return f"expected {stream.frames} frames (declared by the container), decoded {self.frames}"
        if declared_end is not None:
            reached = f"{float(self.end):.3f} s" if self.end is not None else "nothing"
            return f"expected video up to {float(declared_end):.3f} s (declared by the container), decoded up to {reached} ({self.frames} frames)"
        return None

    def _ends_by(self, declared_end: Fraction, stream: av.video.stream.VideoStream) -> bool:
        rate = stream.average_rate or stream.guessed_rate
        slack = max(self.gap, 1 / rate if rate else Fraction(0)) + Fraction(1, 1000)
        return self.end is not None and self.end + slack >= declared_end
