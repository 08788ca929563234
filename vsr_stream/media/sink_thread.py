"""A sink written from its own thread, so encoding overlaps the caller's work.

:class:`ThreadedSink` wraps any :class:`~vsr_stream.media.sink.Sink`: ``write_frame`` and
``write_packet`` queue the item (blocking while ``capacity`` items wait) and return; one writer
thread makes every call on the wrapped sink, in order (sinks are not thread-safe). A frame may
come with the work that finishes it (``prepare``), which the writer runs first, in the same
order, so that work too overlaps the caller's. A failure in the writer is raised to the caller
at its next call, ``close`` included, as the original error.
The libav encoders and muxers release the GIL, so with torch doing the same the two really run
at once on two cores.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace
from typing import Any, Callable

from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.sink import Sink

_STOP = object()


class ThreadedSink:
    """See the module docstring. Counters (``frames_written``, ...) are the wrapped sink's,
    exact after ``flush``, ``close`` or ``abort``; ``busy_s`` is the writer's time inside the sink,
    ``prepare_s`` its time in the frames' ``prepare``."""

    def __init__(self, sink: Sink, capacity: int = 4) -> None:
        self.sink = sink
        self.items: queue.Queue[Any] = queue.Queue(capacity)
        self.error: BaseException | None = None
        self.busy_s = self.prepare_s = 0.0
        self.thread = threading.Thread(target=self._write, name="vsr-encode", daemon=True)
        self.thread.start()

    def __getattr__(self, name: str) -> Any:  # the wrapped sink's counters
        return getattr(self.sink, name)

    def write_frame(self, item: VideoFrameItem, on_written: Callable[[VideoFrameItem], None] | None = None,
                    prepare: Callable[[], Any] | None = None) -> None:
        """Queue ``item``; ``on_written(item)`` is called from the writer thread once it is written.
        ``prepare``: None, or what gives the frame's array (``item.array`` is then ignored), called
        from the writer thread just before the frame is written, after every earlier item."""
        self._put((item, on_written, prepare))

    def write_packet(self, item: PacketItem) -> None:
        self._put((item, None, None))

    def flush(self) -> None:
        """Wait until everything queued is written; raises the writer's error."""
        self._check()
        self.items.join()
        self._check()

    def close(self) -> None:
        """Write what is queued, then finalise (the wrapped sink's ``close``); raises the writer's error."""
        self._join()
        self.sink.close()

    def abort(self) -> None:
        """Drop what is queued and remove the output; never raises."""
        self.error = self.error or _Aborted()
        while True:  # empty the queue so the writer sees the stop mark
            try:
                self.items.get_nowait()
            except queue.Empty:
                break
            self.items.task_done()
        self._join(check=False)
        self.sink.abort()

    def _put(self, entry: tuple[Any, Any, Any]) -> None:
        self._check()
        self.items.put(entry)

    def _join(self, check: bool = True) -> None:
        if self.thread.is_alive():
            self.items.put(_STOP)
            self.thread.join()
        if check:
            self._check()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _write(self) -> None:
        while True:
            entry = self.items.get()
            try:
                if entry is _STOP:
                    return
                if self.error is None:  # after a failure or abort: discard the rest until the stop mark
                    self._write_one(*entry)
            finally:
                self.items.task_done()

    def _write_one(self, item: VideoFrameItem | PacketItem, on_written: Callable[[Any], None] | None,
                   prepare: Callable[[], Any] | None) -> None:
        if prepare is not None:
            t0 = time.perf_counter()
            try:
                item = replace(item, array=prepare())
            except BaseException as e:  # re-raised in the caller's thread at its next call
                self.error = e
                return
            finally:
                self.prepare_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            if isinstance(item, VideoFrameItem):
                self.sink.write_frame(item)
            else:
                self.sink.write_packet(item)
            if on_written is not None:
                on_written(item)
        except BaseException as e:  # re-raised in the caller's thread at its next call
            self.error = e
        self.busy_s += time.perf_counter() - t0


class _Aborted(Exception):
    """Marks a sink whose output was aborted: further writes are refused."""
