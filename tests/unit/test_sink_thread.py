"""ThreadedSink: order kept, errors raised in the caller, abort removes the output."""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pytest

from vsr_stream.errors import SinkError
from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.sink_thread import ThreadedSink


class RecordingSink:
    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at
        self.frames_written = self.packets_written = self.packets_dropped = self.resized_frames = 0
        self.closed = self.aborted = False

    def write_frame(self, item: VideoFrameItem) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and item.index == self.fail_at:
            raise SinkError(f"encoder failed at frame {item.index}")
        self.calls.append(("frame", item.index))
        self.frames_written += 1

    def write_packet(self, item: PacketItem) -> None:
        self.calls.append(("packet", item.pts))
        self.packets_written += 1

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _frame(i: int) -> VideoFrameItem:
    return VideoFrameItem(i, i, Fraction(1, 25), 1, np.zeros((4, 4, 3), np.uint8), None)


def _packet(pts: int) -> PacketItem:
    return PacketItem(stream_index=1, pts=pts, dts=pts, time_base=Fraction(1, 48000), duration=1, data=b"x",
                      is_keyframe=True)


def test_items_reach_the_sink_in_order_from_one_writer_thread() -> None:
    inner = RecordingSink()
    sink = ThreadedSink(inner, capacity=2)
    for i in range(20):
        sink.write_frame(_frame(i))
        sink.write_packet(_packet(i))
    sink.close()
    assert inner.calls == [c for i in range(20) for c in (("frame", i), ("packet", i))]
    assert inner.closed and not inner.aborted
    assert inner.threads == {"vsr-encode"}
    assert sink.frames_written == 20 and sink.packets_written == 20


def test_writer_error_is_raised_to_the_caller_and_abort_removes_output() -> None:
    inner = RecordingSink(fail_at=3)
    sink = ThreadedSink(inner, capacity=1)
    with pytest.raises(SinkError, match="frame 3"):
        for i in range(50):
            sink.write_frame(_frame(i))
        sink.close()
    assert not inner.closed
    sink.abort()
    assert inner.aborted
    assert [c[1] for c in inner.calls] == [0, 1, 2]


def test_abort_with_queued_items_drops_them() -> None:
    inner = RecordingSink()
    sink = ThreadedSink(inner, capacity=8)
    for i in range(5):
        sink.write_frame(_frame(i))
    sink.abort()
    assert inner.aborted and not inner.closed
    with pytest.raises(Exception):
        sink.write_frame(_frame(5))


def test_flush_waits_for_the_writer_and_reports_each_written_frame() -> None:
    inner = RecordingSink()
    sink = ThreadedSink(inner, capacity=3)
    written: list[int] = []
    for i in range(10):
        sink.write_frame(_frame(i), on_written=lambda item: written.append(item.index))
    sink.flush()
    assert written == list(range(10)) and inner.frames_written == 10
    assert not inner.closed and sink.busy_s > 0
    sink.close()
    assert inner.closed


def test_prepared_frames_are_finished_in_the_writer_in_order_and_a_failure_reaches_the_caller() -> None:
    inner = RecordingSink()
    sink = ThreadedSink(inner, capacity=2)
    made: list[tuple[int, str]] = []

    def prepare(i: int):
        def run() -> np.ndarray:
            made.append((i, threading.current_thread().name))
            if i == 6:
                raise ValueError("stitch failed at 6")
            return np.full((4, 4, 3), i, np.uint8)
        return run

    arrays: list[int] = []
    inner_write = inner.write_frame
    inner.write_frame = lambda item: (arrays.append(int(item.array[0, 0, 0])), inner_write(item))  # type: ignore
    with pytest.raises(ValueError, match="stitch failed at 6"):
        for i in range(20):
            sink.write_frame(_frame(i), prepare=prepare(i))  # _frame's zeros are replaced
        sink.flush()
    assert made == [(i, "vsr-encode") for i in range(7)] and arrays == list(range(6))
    assert sink.prepare_s > 0
    sink.abort()
    assert inner.aborted
