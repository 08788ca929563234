"""The decode stage's ingest queue for live sources: the one place frames may be dropped.

A reader thread pulls items from the source as fast as the network delivers them, stamps each
with its ingest time (``time.monotonic()``, seconds; system-wide on Linux, so the encode stage
can compare it in another process) and queues it. The stage takes items with :meth:`Ingest.get`.

Policies: ``drop_oldest`` keeps the queue to ``capacity`` frames and, at ``get``, drops every
frame that has waited longer than the latency budget, oldest first; ``block`` drops nothing and
the reader waits for room (the source then falls behind). Passthrough packets are never dropped
and do not count towards the capacity.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any, Literal

from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.source import Source

log = logging.getLogger(__name__)

Item = VideoFrameItem | PacketItem
_BLOCK_CAPACITY = 8  # frames read ahead under the block policy


class Ingest:
    """See the module docstring. ``get`` raises the reader's error once the queue is empty."""

    def __init__(self, source: Source, policy: Literal["drop_oldest", "block"], budget_ms: int) -> None:
        self.source, self.policy = source, policy
        self.budget_s = budget_ms / 1000
        rate = source.info.video.frame_rate
        self.capacity = _BLOCK_CAPACITY if policy == "block" else max(1, math.ceil(self.budget_s * float(rate or 30)))
        self.queue: deque[tuple[Item, float]] = deque()
        self.frames_queued = 0
        self.peak_frames = 0
        self.drops = 0
        self.busy_s = 0.0  # the reader's time inside the source (decoding, or waiting for the network)
        self.ended = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="vsr-ingest", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _read(self) -> None:
        items = self.source.items()
        try:
            while True:
                t0 = time.perf_counter()
                item = next(items, None)
                self.busy_s += time.perf_counter() - t0
                if item is None or not self._put(item, time.monotonic()):
                    return
        except BaseException as e:  # handed to the stage, which reports it
            self.error = e
        finally:
            items.close()  # in this thread: the source is not safe to touch from two threads
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def _put(self, item: Item, now: float) -> bool:
        """Queue ``item``; False once the stage has stopped listening."""
        frame = isinstance(item, VideoFrameItem)
        with self.cond:
            if frame and self.policy == "block":
                self.cond.wait_for(lambda: self.frames_queued < self.capacity or self.ended)
            elif frame:
                while self.frames_queued >= self.capacity:
                    self._drop_oldest_frame()
            if self.ended:
                return False
            self.queue.append((item, now))
            self.frames_queued += frame
            self.peak_frames = max(self.peak_frames, self.frames_queued)
            self.cond.notify_all()
        return True

    def get(self, timeout_s: float) -> tuple[Item, float] | None:
        """The next (item, ingest time), or None if nothing came within ``timeout_s``.
        Raises EOFError at the end of the source, or the source's error."""
        with self.cond:
            self.cond.wait_for(lambda: self.queue or self.ended, timeout_s)
            if self.policy == "drop_oldest":
                self._drop_stale(time.monotonic())
            if not self.queue:
                if self.error is not None:
                    raise self.error
                if self.ended:
                    raise EOFError
                return None
            item, at = self.queue.popleft()
            self.frames_queued -= isinstance(item, VideoFrameItem)
            self.cond.notify_all()
            return item, at

    def _drop_stale(self, now: float) -> None:
        while self.frames_queued and now - self._oldest_frame_at() > self.budget_s:
            self._drop_oldest_frame()

    def _oldest_frame_at(self) -> float:
        return next(at for item, at in self.queue if isinstance(item, VideoFrameItem))

    def _drop_oldest_frame(self) -> None:
        oldest = next(i for i, (item, _) in enumerate(self.queue) if isinstance(item, VideoFrameItem))
        del self.queue[oldest]
        self.frames_queued -= 1
        self.drops += 1
        if self.drops == 1 or self.drops % 100 == 0:
            log.warning("upscaling is slower than the stream: %d frame(s) dropped at ingest so far "
                        "(decode.latency_budget_ms=%d)", self.drops, self.budget_s * 1000)

    def stop(self, timeout_s: float) -> None:
        """Stop the reader and wait up to ``timeout_s`` for it (a read in progress ends within
        the source's read timeout)."""
        stop_source = getattr(self.source, "stop", None)
        if stop_source is not None:
            stop_source()
        with self.cond:
            self.ended = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        if self.thread.is_alive():
            log.warning("the ingest reader did not stop within %.0f s", timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"ingest_drops": self.drops, "ingest_capacity": self.capacity, "ingest_peak_frames": self.peak_frames}
