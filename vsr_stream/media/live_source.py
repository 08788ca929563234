"""A live network stream (RTSP camera, ...) as one endless source that survives its connection.

Each connection is a :class:`VideoSource` opened with network timeouts. When the stream ends,
stalls (no data for ``read_timeout_ms``) or fails, the source reconnects after a capped
exponential backoff with jitter, and gives up with a SourceError only when no frame has arrived
for ``give_up_after_ms``. The first open fails at once unless ``wait_for_stream_ms`` asks it to
retry with the same backoff (a refused login never is). A :class:`Timeline` rebases every
connection's timestamps so that the frames it yields have strictly increasing pts, and audio
packets move with the video.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction

import av

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import SourceError
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem
from vsr_stream.media.urls import redact_url
from vsr_stream.media.video_source import VideoSource

log = logging.getLogger(__name__)


def backoff_delays_ms(first_ms: int, cap_ms: int, rng: random.Random) -> Iterator[float]:
    """Endless reconnect waits: ``first_ms`` doubling per attempt up to ``cap_ms``, each drawn
    uniformly from its upper half (jitter, so many clients of one server do not retry in step)."""
    delay = float(first_ms)
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(float(cap_ms), delay * 2 or 1.0)


def login_refused(error: SourceError) -> bool:
    """Whether opening failed because the server refused the credentials (RTSP/HTTP 401 or 403):
    a failure that waiting will not heal."""
    return isinstance(error.__cause__, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError))


class Timeline:
    """Rebases the timestamps of successive connections onto one output timeline.

    Video pts come out in ``time_base`` (the first connection's video time base), strictly
    increasing. Within a connection the offset is fixed by its first timestamped item (video or
    passthrough), which lands just after the previous connection's last frame, so a stream that
    restarts at 0, jumps, or starts negative still continues the output. Frames without a pts
    follow the previous frame by one nominal frame duration. Packets keep their own time base;
    a packet that would land before its stream's previous one is dropped (counted).
    """

    def __init__(self, time_base: Fraction, frame_rate: Fraction | None) -> None:
        self.time_base = time_base
        self.frame_s = 1 / frame_rate if frame_rate else Fraction(1, 25)
        self.next_s = Fraction(0)  # where the next connection's first item lands, in seconds
        self.last_pts: int | None = None
        self.offset_s: Fraction | None = None
        self.last_packet_dts: dict[int, int] = {}
        self.packets_dropped = 0

    def new_connection(self) -> None:
        self.offset_s = None
        if self.last_pts is not None:
            self.next_s = self.last_pts * self.time_base + self.frame_s

    def frame(self, item: VideoFrameItem) -> VideoFrameItem:
        """``item`` with its pts, time base and duration on the output timeline."""
        if item.pts is not None and item.time_base is not None:
            self._anchor(item.pts * item.time_base)
            pts = round((item.pts * item.time_base + self.offset_s) / self.time_base)
        elif self.offset_s is None or self.last_pts is None:
            pts = round(self.next_s / self.time_base)
        else:
            pts = self.last_pts + round(self.frame_s / self.time_base)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        if self.offset_s is None:  # not anchored yet: the first timestamped item lands after this frame
            self.next_s = pts * self.time_base + self.frame_s
        duration = round(item.duration * item.time_base / self.time_base) if item.duration and item.time_base else None
        return replace(item, pts=pts, time_base=self.time_base, duration=duration)

    def packet(self, item: PacketItem) -> PacketItem | None:
        """``item`` moved by the connection's offset, or None when it would go backwards."""
        stamp = item.dts if item.dts is not None else item.pts
        if stamp is None:
            return item
        self._anchor(stamp * item.time_base)
        shift = round(self.offset_s / item.time_base)
        pts = None if item.pts is None else item.pts + shift
        dts = None if item.dts is None else item.dts + shift
        new_stamp = dts if dts is not None else pts
        previous = self.last_packet_dts.get(item.stream_index)
        if new_stamp < 0 or (previous is not None and new_stamp <= previous):
            self.packets_dropped += 1
            return None
        self.last_packet_dts[item.stream_index] = new_stamp
        return replace(item, pts=pts, dts=dts)

    def _anchor(self, first_s: Fraction) -> None:
        if self.offset_s is None:
            self.offset_s = self.next_s - first_s


class LiveSource:
    """See the module docstring. ``items()`` runs until :meth:`close` (from any thread), the
    give-up time, or forever; ``info`` describes the first connection."""

    def __init__(self, url: str, cfg: DecodeConfig, seed: int | None = None) -> None:
        self._url, self._cfg = url, cfg
        self._closed = threading.Event()
        self._rng = random.Random(seed)
        self.reconnects = 0
        self._connection: VideoSource | None = self._first_connection()
        self.info: SourceInfo = replace(self._connection.info, live=True)
        self._timeline = Timeline(self.info.video.time_base, self.info.video.frame_rate)
        self._last_frame_at = time.monotonic()

    @property
    def packets_dropped(self) -> int:
        return self._timeline.packets_dropped

    def items(self) -> Iterator[VideoFrameItem | PacketItem]:
        index = 0
        while not self._closed.is_set():
            for item in self._connection_items():
                if isinstance(item, VideoFrameItem):
                    self._last_frame_at = time.monotonic()
                    yield replace(self._timeline.frame(item), index=index)
                    index += 1
                elif (moved := self._timeline.packet(item)) is not None:
                    yield moved

    def _connection_items(self) -> Iterator[VideoFrameItem | PacketItem]:
        """One connection's items (opening a new one first if needed); returns when it ends."""
        if self._connection is None:
            self._connection = self._reconnect()
            if self._connection is None:
                return
        known = self.info.passthrough
        streams = {s.index for s in self._connection.info.passthrough if s in known}
        try:
            for item in self._connection.items():
                if self._closed.is_set():
                    return
                if isinstance(item, VideoFrameItem) or item.stream_index in streams:
                    yield item
            reason = "the stream ended"
        except SourceError as e:
            reason = str(e)
        finally:
            self._drop_connection()
        if not self._closed.is_set():
            log.warning("%s", reason if redact_url(self._url) in reason else f"{redact_url(self._url)}: {reason}")

    def _first_connection(self) -> VideoSource:
        """The first connection; while ``wait_for_stream_ms`` allows, retried with the backoff."""
        try:
            return VideoSource(self._url, self._cfg)
        except SourceError as e:
            if not self._cfg.wait_for_stream_ms or login_refused(e):
                raise
            log.warning("%s; retrying for up to %.1f s (decode.wait_for_stream_ms)", e, self._cfg.wait_for_stream_ms / 1000)
            connection = self._open_with_backoff(time.monotonic(), str(e), first=True)
        if connection is None:
            raise SourceError(f"{redact_url(self._url)}: stopped while waiting for the stream to open")
        return connection

    def _reconnect(self) -> VideoSource | None:
        """A new connection, None once closed; SourceError after give_up_after_ms without frames."""
        connection = self._open_with_backoff(self._last_frame_at, "no attempt made", first=False)
        if connection is not None:
            self.reconnects += 1
            self._timeline.new_connection()
            log.warning("%s: reconnected (reconnect %d)", redact_url(self._url), self.reconnects)
        return connection

    def _open_with_backoff(self, since: float, last_error: str, first: bool) -> VideoSource | None:
        """Open attempts after the backoff's waits until one succeeds (None once closed); SourceError
        once the next wait would pass the limit after ``since`` (``wait_for_stream_ms`` for the
        ``first`` connection, else ``give_up_after_ms``), or on a refused login for the first."""
        cfg, shown = self._cfg, redact_url(self._url)
        limit, limit_ms = ("wait_for_stream_ms", cfg.wait_for_stream_ms) if first else \
            ("give_up_after_ms", cfg.give_up_after_ms)
        for attempt, delay_ms in enumerate(backoff_delays_ms(cfg.reconnect_delay_ms, cfg.reconnect_delay_max_ms, self._rng), 1):
            waited_ms = (time.monotonic() - since) * 1000
            if waited_ms + delay_ms > limit_ms:
                what = (f"the stream did not open in {waited_ms / 1000:.1f} s and {attempt - 1} retries" if first
                        else f"no frame for {waited_ms / 1000:.1f} s and {attempt - 1} failed reconnect attempt(s)")
                raise SourceError(f"{shown}: {what} (decode.{limit}={limit_ms}); last error: {last_error}")
            if self._closed.wait(delay_ms / 1000):
                return None
            try:
                connection = VideoSource(self._url, self._cfg)
            except SourceError as e:
                if first and login_refused(e):
                    raise
                last_error = str(e)
                log.info("%s: attempt %d to open failed: %s", shown, attempt, e)
                continue
            log.info("%s: opened after %d attempt(s)", shown, attempt)
            return connection
        raise AssertionError("unreachable: the backoff never ends")

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        """Ask ``items()`` (maybe running in another thread) to return: at once while it waits to
        reconnect, else after the item being read (at most read_timeout_ms)."""
        self._closed.set()

    def close(self) -> None:
        """Stop and release the connection (idempotent); from the thread that iterates ``items()``."""
        self._closed.set()
        self._drop_connection()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
