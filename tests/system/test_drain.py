"""A live run's drain on interrupt: the interrupt never lands where something is half done.

The supervisor reads multipart messages from its control socket and, on a live input, goes on
reading after the first interrupt to drain the pipeline. An interrupt that lands between two
frames of one message used to leave the rest of it for the next read ("empty multipart
message"). Here the control socket raises the signal exactly there, every time. The fused
loop's weak spot was between handing a frame to the encoder and counting it.
"""

from __future__ import annotations

import dataclasses
import logging
import signal

import pytest
import zmq

from vsr_stream.api import resolve_config
from vsr_stream.media.synth import write_clip
from vsr_stream.media.sink_thread import ThreadedSink
from vsr_stream.runtime import fused, supervisor
from vsr_stream.runtime.graph import build_graph
from vsr_stream.runtime.supervisor import Supervisor
from vsr_stream.transport import make_endpoints, open_socket


class _TearingSocket(zmq.Socket):
    """A ROUTER whose ``tear_at``-th message read raises SIGTERM after its first frame."""

    tear_at = 0
    reads = 0

    def recv_multipart(self, flags=0, copy=True, track=False):
        parts = [self.recv(flags, copy=copy, track=track)]
        type(self).reads += 1
        if type(self).reads == type(self).tear_at:
            signal.raise_signal(signal.SIGTERM)
        while self.getsockopt(zmq.RCVMORE):
            parts.append(self.recv(flags, copy=copy, track=track))
        return parts


class _TearingContext:
    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx

    def socket(self, kind: int) -> zmq.Socket:
        return self.ctx.socket(kind, socket_class=_TearingSocket)


@pytest.fixture
def raising_sigterm():
    def handler(signum, frame):  # what the CLI installs for SIGTERM
        raise KeyboardInterrupt("received signal SIGTERM")

    before = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def tearing_control(monkeypatch, raising_sigterm):
    def tearing_open(ctx, kind, address, **kw):
        return open_socket(_TearingContext(ctx) if kind == zmq.ROUTER else ctx, kind, address, **kw)

    monkeypatch.setattr(supervisor, "open_socket", tearing_open)
    monkeypatch.setattr(_TearingSocket, "reads", 0)
    return _TearingSocket


def _run(tmp_path, drain: bool, tear_after_start: int):
    src = write_clip(tmp_path / "in.mp4", width=64, height=48, frames=60)
    cfg = resolve_config("live", 2, {"transport": {"mode": "inproc"}, "encode": {"lossless": True}})
    ep = make_endpoints(cfg.transport, cfg.n_classes)
    specs = build_graph(cfg, str(src), str(tmp_path / "out.mkv"), ep)
    _TearingSocket.tear_at = len(specs) + tear_after_start  # past every stage's READY
    return Supervisor(cfg, specs, ep, None, drain_on_interrupt=drain).run()


@pytest.mark.parametrize("tear_after_start", [1, 3])
def test_an_interrupt_mid_message_drains_the_run(tmp_path, tearing_control, caplog, tear_after_start):
    with caplog.at_level(logging.WARNING, logger="vsr_stream.runtime.supervisor"):
        stats = _run(tmp_path, drain=True, tear_after_start=tear_after_start)
    assert tearing_control.reads >= tearing_control.tear_at  # the tear did happen
    assert any("draining the pipeline" in r.message for r in caplog.records)
    assert 0 < stats["encode"]["frames"] == stats["decode"]["frames"]


def test_without_a_drain_the_interrupt_stops_the_run_at_once(tmp_path, tearing_control):
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        _run(tmp_path, drain=False, tear_after_start=1)
    assert tearing_control.reads == tearing_control.tear_at  # raised inside the torn read


def test_the_fused_loop_counts_the_frame_it_was_writing_when_interrupted(tmp_path, monkeypatch, raising_sigterm):
    """The file is made to look live (the loop drains only then); SIGTERM comes right after the
    third frame is handed to the encoder, before the loop counts it."""
    opened = fused.open_source

    def as_live(url, cfg):
        source = opened(url, cfg)
        source.info = dataclasses.replace(source.info, live=True)
        return source

    write = ThreadedSink.write_frame
    calls = []

    def write_then_interrupt(self, item, **kw):
        write(self, item, **kw)
        calls.append(item.index)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(fused, "open_source", as_live)
    monkeypatch.setattr(ThreadedSink, "write_frame", write_then_interrupt)
    src = write_clip(tmp_path / "in.mp4", width=64, height=48, frames=30)
    cfg = resolve_config("live", 2, {"transport": {"mode": "fused"}, "encode": {"lossless": True}})
    stats = fused.run_fused(cfg, str(src), str(tmp_path / "out.mkv"))
    assert len(calls) >= 3 and stats["encode"]["frames"] == len(calls) < 30  # ended early, every frame counted
