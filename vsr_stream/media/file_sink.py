"""A video file or stream sink: encode HR RGB frames and mux passthrough packets untouched.

Where the bytes go depends on the job (:func:`write_mode`): a finite file job writes to a
temporary name beside the output and renames it into place only when everything succeeded; a
live recording (MKV or TS) is written in place, flushed as it goes, and kept whatever happens
later; an ``rtsp://`` output is published (RTSP ANNOUNCE/RECORD over TCP).

The video stream is configured by the first frame (its size, padded to even for 4:2:0 and
4:2:2); later frames of another size are resized to it. Frames keep their own pts in the
source's time base, so variable frame rate survives.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError
from vsr_stream.media import out_streams
from vsr_stream.media.codecs import hardware_requirement, live_encoder_options, plan_encoder
from vsr_stream.media.colour import RANGE_FULL, RGB_COLORSPACE
from vsr_stream.media.frames import needs_even, pad_to, rgb_to_frame
from vsr_stream.media.interleave import PacketQueue
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.sink_common import check_array, sink_error, temp_sibling
from vsr_stream.media.urls import error_text, redact_url, scheme_of

log = logging.getLogger(__name__)

LIVE_FILE_FORMATS = frozenset({"matroska", "mpegts"})
# Matroska holds a cluster in memory until it closes: close one every second.
_LIVE_FILE_OPTIONS = {"matroska": {"cluster_time_limit": "1000"}}
_STREAM_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp"}


def write_mode(path: str, source: SourceInfo) -> str:
    """``stream`` for a URL output, ``in_place`` for a live source's recording, else ``atomic``
    (temporary name, renamed on success, removed on failure)."""
    if scheme_of(path) not in (None, "file"):
        return "stream"
    return "in_place" if source.live else "atomic"


class FileSink:
    """See :func:`vsr_stream.media.sink.open_sink`."""

    def __init__(self, path: str, cfg: EncodeConfig, source: SourceInfo, scale: int) -> None:
        self.frames_written = 0
        self.packets_dropped = 0
        self.packets_written = 0
        self._mode, self._shown, self._overwrite = write_mode(path, source), redact_url(path), cfg.overwrite
        self._final = Path(path)
        self._tmp = temp_sibling(self._final) if self._mode == "atomic" else self._final
        self._source, self._scale = source, scale
        self._state = "open"
        self._queue = PacketQueue()
        self._size: tuple[int, int] | None = None  # (h, w) of the output
        self._first_shape: tuple[int, int] | None = None
        self.resized_frames = 0
        self._last: tuple[int, int] | None = None  # (pts, duration) of the last frame
        with self._errors("creating the output"):
            self._container = self._open_container(path, cfg)
        try:
            self._setup(cfg)
        except BaseException:
            self.abort()
            raise

    def _open_container(self, path: str, cfg: EncodeConfig) -> av.container.OutputContainer:
        if self._mode == "stream":
            options = {"rtsp_transport": "tcp"} if scheme_of(path) in ("rtsp", "rtsps") else {}
            timeout_s = cfg.stream_timeout_ms / 1000
            return av.open(path, "w", format=_STREAM_FORMATS.get(scheme_of(path)), options=options,
                           timeout=(timeout_s, timeout_s))
        container = av.open(str(self._tmp), "w")
        if self._mode == "in_place":  # an MKV or TS (check_output): flush every packet to disk as it is muxed
            # PyAV hands these to the muxer when it writes the header (the attribute itself is read-only).
            container.options.update({"flush_packets": "1", **_LIVE_FILE_OPTIONS.get(container.format.name, {})})
        return container

    def _setup(self, cfg: EncodeConfig) -> None:
        video = self._source.video
        self._plan = plan_encoder(self._container.format.name, cfg, video.bit_depth)
        self._time_base = video.time_base
        with self._errors("adding the streams"):
            self._video = self._add_video()
            self._passthrough = out_streams.add_passthrough(self._container, self._source)
            out_streams.copy_container_data(self._container, self._source)
        log.info("writing %s: %s %s, %d passthrough stream(s)", self._shown, self._plan.codec, self._plan.pix_fmt, len(self._passthrough))

    def _add_video(self) -> av.video.stream.VideoStream:
        video, plan = self._source.video, self._plan
        stream = self._container.add_stream(plan.codec, rate=video.frame_rate)
        ctx = stream.codec_context
        ctx.pix_fmt, ctx.time_base, ctx.thread_count = plan.pix_fmt, video.time_base, plan.threads
        stream.time_base = video.time_base
        ctx.options = dict(plan.options)
        if self._mode != "atomic":
            ctx.options = {**live_encoder_options(plan.codec, video.frame_rate), **ctx.options}
        if plan.bit_rate:
            ctx.bit_rate = plan.bit_rate
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            if getattr(video, name) is not None:
                setattr(ctx, name, getattr(video, name))
        if av.VideoFormat(plan.pix_fmt).is_rgb:
            # The pixels are full-range RGB whatever the source's YUV matrix and range were.
            ctx.colorspace, ctx.color_range = RGB_COLORSPACE, RANGE_FULL
        if video.sample_aspect_ratio:
            ctx.sample_aspect_ratio = video.sample_aspect_ratio
        if video.rotation_deg:
            stream.set_display_rotation(video.rotation_deg)
        out_streams.describe(stream, out_streams.video_metadata(video.metadata), video.language, video.disposition)
        return stream

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Every av/OS failure as SinkError naming the output and the step."""
        try:
            yield
        except SinkError:
            raise
        except (av.error.FFmpegError, OSError) as e:
            need = hardware_requirement(self._plan.codec) if getattr(self, "_plan", None) else None
            hint = f" ({self._plan.codec} needs {need}; leave encode.codec unset for a software encoder)" if need else ""
            raise sink_error(e, f"{self._shown}: {doing} failed: {error_text(e)}{hint}") from e

    def write_frame(self, item: VideoFrameItem) -> None:
        """Encode one HR frame: (H, W, 3) RGB uint8/uint16, pts in ``item.time_base``."""
        self._require_open()
        check_array(item.array)
        with self._errors(f"writing frame {item.index}"):
            if self._size is None:
                self._start_video(item.array)
            frame = self._fit(item.array)
            frame.pts, frame.duration = self._timing(item)
            frame.time_base = self._time_base
            self._container.mux(self._video.encode(frame))
            self.frames_written += 1
            self._release(self._queue.pop_until(frame.pts * self._time_base))

    def _start_video(self, array: np.ndarray) -> None:
        h, w = array.shape[:2]
        even_h, even_w = needs_even(self._plan.pix_fmt)
        size = (h + (h % 2 if even_h else 0), w + (w % 2 if even_w else 0))
        if size != (h, w):
            log.info("%s needs even dimensions: padding %dx%d to %dx%d by repeating the last row/column", self._plan.pix_fmt, w, h, size[1], size[0])
        expected = (self._source.video.height * self._scale, self._source.video.width * self._scale)
        if self._source.kind == "video" and (h, w) != expected:
            log.warning("first frame is %dx%d, expected %dx%d (source size x%d)", w, h, expected[1], expected[0], self._scale)
        self._first_shape, self._size = (h, w), size
        self._video.height, self._video.width = size

    def _fit(self, array: np.ndarray) -> av.VideoFrame:
        if array.shape[:2] in (self._first_shape, self._size):
            return rgb_to_frame(pad_to(array, *self._size), self._plan.pix_fmt, self._source.video)
        if self.resized_frames == 0:
            log.warning("frame of %dx%d resized to the output size %dx%d (the first frame fixed it)", array.shape[1], array.shape[0], self._size[1], self._size[0])
        self.resized_frames += 1
        return rgb_to_frame(array, self._plan.pix_fmt, self._source.video, size=self._size)

    def _timing(self, item: VideoFrameItem) -> tuple[int, int]:
        """(pts, duration) in the output time base; a missing pts follows the last frame."""
        duration = self._rescale(item.duration, item.time_base) or self._nominal_duration()
        if item.pts is not None:
            pts = self._rescale(item.pts, item.time_base)
        else:
            pts = 0 if self._last is None else sum(self._last)
        if self._last is not None and pts <= self._last[0]:
            raise SinkError(f"{self._shown}: frame {item.index} has pts {pts}, not after the previous frame's {self._last[0]} (time base {self._time_base})")
        self._last = (pts, duration)
        return pts, duration

    def _rescale(self, value: int | None, time_base: Fraction | None) -> int | None:
        if value is None:
            return None
        return value if time_base in (None, self._time_base) else round(value * time_base / self._time_base)

    def _nominal_duration(self) -> int:
        rate = self._source.video.frame_rate
        return max(1, round(1 / (rate * self._time_base))) if rate else 1

    def write_packet(self, item: PacketItem) -> None:
        """Queue one passthrough packet; it is muxed once the video has reached its time."""
        self._require_open()
        if item.stream_index not in self._passthrough:
            raise SinkError(f"{self._shown}: packet for stream {item.stream_index}, which is not a passthrough stream of the source")
        self._queue.push(item)
        if self._last is not None:
            self._release(self._queue.pop_until(self._last[0] * self._time_base))

    def _release(self, items: list[PacketItem]) -> None:
        for item in items:
            packet = av.Packet(item.data)
            packet.stream = self._passthrough[item.stream_index]
            packet.pts, packet.dts, packet.time_base = item.pts, item.dts, item.time_base
            packet.duration = item.duration or 0
            packet.is_keyframe = item.is_keyframe
            self._container.mux_one(packet)
            self.packets_written += 1

    def close(self) -> None:
        """Flush the encoder and the held packets, write the trailer, then rename the file
        into place. SinkError on any failure (call :meth:`abort` then)."""
        self._require_open()
        if self.frames_written == 0:
            raise SinkError(f"{self._shown}: no video frame was written; refusing to create a file without video")
        with self._errors("finishing the file"):
            self._container.mux(self._video.encode(None))
            self._release(self._queue.drain())
            self._container.close()
            self._publish()
        self._state = "closed"
        if self.resized_frames:
            log.warning("%d frame(s) were resized to %dx%d", self.resized_frames, self._size[1], self._size[0])
        log.info("wrote %s: %d frames, %d passthrough packets", self._shown, self.frames_written, self.packets_written)

    def _publish(self) -> None:
        if self._mode != "atomic":
            return
        if not self._overwrite and self._final.exists():
            raise SinkError(errno.EEXIST, f"{self._final} appeared while writing; not replacing it (overwrite is off)")
        os.replace(self._tmp, self._final)

    def abort(self) -> None:
        """Drop the temporary output; a live recording is finished as far as possible and kept.
        Never raises; a no-op after close() or a first abort()."""
        if self._state != "open":
            return
        self._state = "aborted"
        if self._mode != "atomic":
            self._keep_partial()
            return
        container = getattr(self, "_container", None)
        try:
            if container is not None:
                container.close()
        except Exception as e:  # the output is being thrown away; its close error is moot
            log.debug("closing the aborted output %s: %s", self._tmp, e)
        try:
            self._tmp.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove the aborted output %s: %s", self._tmp, e)

    def _keep_partial(self) -> None:
        try:
            if self.frames_written:
                self._container.mux(self._video.encode(None))
            self._container.close()
        except Exception as e:  # the run already failed; what is on disk stays readable
            log.debug("finishing the interrupted output %s: %s", self._shown, e)
        if self._mode == "in_place":
            log.warning("the run failed; kept the recording so far: %s (%d frames)", self._shown, self.frames_written)

    def _require_open(self) -> None:
        if self._state != "open":
            raise SinkError(f"{self._shown}: sink already {self._state}")
