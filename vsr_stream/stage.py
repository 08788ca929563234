"""The one stage contract and the one run loop every stage uses.

A stage is a small object with ``setup / process / flush / teardown`` (a source stage
has ``produce`` instead of ``process``). :func:`run_stage` owns the sockets: it receives
with timeouts, answers control messages, counts EOS, sends with backpressure, and reports
READY, PROGRESS, DONE or ERROR to the supervisor. The same loop runs in a thread or a
process; only the zmq context and the addresses differ.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import zmq

from vsr_stream import messages as m
from vsr_stream.errors import Cancelled, PipelineTimeoutError, ProtocolError
from vsr_stream.runtime.memory import trim_due, trim_heap
from vsr_stream.transport import open_socket

log = logging.getLogger(__name__)

Out = tuple[str, m.Message]  # (output port name, message)

_POLL_MS = 100
_FLUSH_LINGER_MS = 10_000


class Stage:
    """Base of every stage. Subclasses set ``name`` and override what they need.

    ``eos_expected``: EOS messages to receive before flushing; None marks a service
    (a branch worker) that runs until the supervisor says STOP.
    """

    name = "stage"
    eos_expected: int | None = 1

    def setup(self) -> None:
        """Load models, open files. Runs before READY is reported."""

    def process(self, msg: m.Message) -> Iterable[Out]:
        """Handle one data message; yield what to send."""
        return ()

    def deadline_ms(self) -> float | None:
        """Milliseconds until :meth:`tick` is due (a batch's max wait), or None."""
        return None

    def tick(self) -> Iterable[Out]:
        """Called when :meth:`deadline_ms` has passed."""
        return ()

    def idle(self) -> bool:
        """True when nothing is owed downstream, so a long silence is not a stall."""
        return self.eos_expected is None

    def on_eos(self, msg: m.Message) -> None:
        """Called for every EOS received; check the sender's count here."""

    def drained(self) -> bool:
        """True when no work is outstanding; the loop flushes once EOS is in and this holds."""
        return True

    def flush(self) -> Iterable[Out]:
        """Called once after the last expected EOS; yield the remaining output and EOS."""
        return ()

    def teardown(self, ok: bool) -> None:
        """Release resources; ``ok`` is False after an error or a STOP."""

    def stats(self) -> dict[str, Any]:
        return {}


class SourceStage(Stage):
    """A stage with no data input: it produces after the supervisor says START."""

    eos_expected = 0

    def produce(self) -> Iterator[Out | None]:
        """Yield what to send; yield None while waiting for input so the loop can check for STOP.
        A graceful STOP closes this generator and goes on with :meth:`flush` (the stream ends early)."""
        raise NotImplementedError


@dataclass
class Wiring:
    """The sockets of one stage: inputs (PULL), outputs by port (PUSH), and the control address."""

    control: str
    inputs: list[tuple[str, bool]] = field(default_factory=list)  # (address, bind)
    outputs: dict[str, tuple[str, bool]] = field(default_factory=dict)  # port -> (address, bind)
    hwm: int = 16
    stall_timeout_ms: int = 300_000


class _Finished(Exception):
    """The supervisor ended a service stage because the run is complete."""


class _Sockets:
    """Owns one stage's sockets; sending honours backpressure but never ignores STOP."""

    def __init__(self, ctx: zmq.Context, wiring: Wiring, identity: str) -> None:
        self.wiring = wiring
        self.control = open_socket(ctx, zmq.DEALER, wiring.control, bind=False, hwm=1000, identity=identity)
        self.inputs = [open_socket(ctx, zmq.PULL, a, bind=b, hwm=wiring.hwm) for a, b in wiring.inputs]
        self.outputs = {p: open_socket(ctx, zmq.PUSH, a, bind=b, hwm=wiring.hwm)
                        for p, (a, b) in wiring.outputs.items()}
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        for s in self.inputs:
            self.poller.register(s, zmq.POLLIN)
        self.stage_name = identity
        self.drain_on_finish = False
        self.finishing = False

    def tell(self, msg: m.Message) -> None:
        self.control.send_multipart(m.encode(msg), copy=False)

    def check_control(self, timeout_ms: int = 0) -> m.Message | None:
        """Return a control message if one arrived; raise Cancelled on STOP."""
        if not self.control.poll(timeout_ms):
            return None
        msg = m.decode(self.control.recv_multipart(copy=False))
        if msg.kind == m.STOP and msg.header.get("graceful") and self.drain_on_finish:
            self.finishing = True  # a source ends its stream (EOS) and the pipeline drains
            return None
        if msg.kind == m.STOP and msg.header.get("graceful"):
            raise _Finished
        if msg.kind == m.STOP:
            raise Cancelled(f"{self.stage_name}: stopped by the supervisor")
        return msg

    def send(self, port: str, msg: m.Message) -> None:
        sock = self.outputs[port]
        parts = m.encode(msg)
        waited = 0.0
        while True:
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            if not sock.poll(_POLL_MS, zmq.POLLOUT):
                self.check_control()
                waited += _POLL_MS
            if waited > self.wiring.stall_timeout_ms:
                raise PipelineTimeoutError(
                    f"{self.stage_name}: could not send on '{port}' for {waited / 1000:.0f} s; downstream stalled")

    def close(self, ok: bool) -> None:
        linger = _FLUSH_LINGER_MS if ok else 0
        for s in [*self.outputs.values(), *self.inputs, self.control]:
            s.close(linger)


def run_stage(name: str, factory: Callable[[], Stage], wiring: Wiring, ctx: zmq.Context) -> None:
    """Build a stage with ``factory`` and run it to completion on ``wiring``.

    Never raises: READY, DONE and ERROR (with the reason) go to the supervisor.
    """
    socks = _Sockets(ctx, wiring, name)
    ok = False
    stage: Stage | None = None
    try:
        stage = factory()
        stage.setup()
        socks.tell(m.control(m.READY, name))
        if isinstance(stage, SourceStage):
            _run_source(stage, socks)
        else:
            _run_consumer(stage, socks)
        ok = True
    except _Finished:
        ok = True
    except Cancelled:
        log.debug("%s cancelled", name)
    except Exception as e:  # the one place a stage's failure is caught: it is reported, not swallowed
        log.debug("%s failed", name, exc_info=True)
        _report_error(socks, name, e)
    finally:
        _teardown(name, stage, ok, socks)


def _teardown(name: str, stage: Stage | None, ok: bool, socks: _Sockets) -> None:
    try:
        if stage is not None:
            stage.teardown(ok)
        if ok and stage is not None:
            socks.tell(m.control(m.DONE, name, stats=stage.stats()))
            _await_release(socks)
    except Exception as e:  # a failing teardown (e.g. a full disk at finalise) is reported
        _report_error(socks, name, e)
    finally:
        socks.close(ok)


def _await_release(socks: _Sockets) -> None:
    """Keep the sockets open until the supervisor's STOP says the run is over (or the stall
    timeout passes): a socket closed while its last messages still wait in its queue can lose
    them, linger or not (seen over ipc with a high-water mark of 2), and then downstream waits
    for an EOS that never comes."""
    deadline = time.monotonic() + socks.wiring.stall_timeout_ms / 1000
    while (left_ms := (deadline - time.monotonic()) * 1000) > 0:
        if socks.control.poll(min(_POLL_MS, left_ms)):
            if m.decode(socks.control.recv_multipart(copy=False)).kind == m.STOP:
                return


def _report_error(socks: _Sockets, name: str, e: BaseException) -> None:
    detail = "".join(traceback.format_exception_only(type(e), e)).strip()
    socks.tell(m.control(m.ERROR, name, error=type(e).__name__, message=str(e) or detail,
                         traceback=traceback.format_exc(limit=8)))


def _run_source(stage: SourceStage, socks: _Sockets) -> None:
    while (msg := socks.check_control(_POLL_MS)) is None or msg.kind != m.START:
        pass
    socks.drain_on_finish = True
    produced = stage.produce()
    for out in produced:
        if out is not None:
            socks.send(*out)
        socks.check_control()
        if socks.finishing:
            log.info("%s: asked to finish early: ending the stream here", stage.name)
            break
    produced.close()
    for port, out in stage.flush():
        socks.send(port, out)


def _run_consumer(stage: Stage, socks: _Sockets) -> None:
    eos_seen = handled = 0
    silent_ms = 0.0
    while stage.eos_expected is None or eos_seen < stage.eos_expected or not stage.drained():
        deadline = stage.deadline_ms()
        timeout = _POLL_MS if deadline is None else max(0, min(_POLL_MS, int(deadline)))
        t0 = time.monotonic()
        ready = dict(socks.poller.poll(timeout))
        if socks.control in ready:
            socks.check_control()
        for sock in socks.inputs:
            if sock in ready:
                silent_ms = 0.0
                eos_seen += _handle(stage, socks, sock)
                handled += 1
                if trim_due(handled):  # flat memory over long runs (runtime/memory.py)
                    trim_heap()
        if not ready or socks.control in ready and len(ready) == 1:
            silent_ms += (time.monotonic() - t0) * 1000
        if (d := stage.deadline_ms()) is not None and d <= 0:
            _send_all(socks, stage.tick())
        if silent_ms > socks.wiring.stall_timeout_ms and not stage.idle():
            raise PipelineTimeoutError(f"{stage.name}: nothing received for {silent_ms / 1000:.0f} s")
    _send_all(socks, stage.flush())


def _handle(stage: Stage, socks: _Sockets, sock: zmq.Socket) -> int:
    msg = m.decode(sock.recv_multipart(copy=False))
    if msg.kind == m.EOS:
        if stage.eos_expected is None:
            raise ProtocolError(f"{stage.name}: a service stage received EOS")
        stage.on_eos(msg)
        return 1
    _send_all(socks, stage.process(msg))
    return 0


def _send_all(socks: _Sockets, outs: Iterable[Out]) -> None:
    for port, msg in outs:
        if port == "control":
            socks.tell(msg)
        else:
            socks.send(port, msg)
