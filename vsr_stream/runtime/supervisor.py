"""The supervisor: starts the stages, waits for READY, says START, watches, and stops the graph.

Binds: control (ROUTER; every stage's DEALER connects with its name as identity) and, in tcp
mode, the directory (REP) that external branch workers ask for their addresses.
Errors travel here out of band: the first one stops every stage and is raised as one
:class:`StageFailedError`. A stage that dies without a word is detected by its handle.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import PipelineTimeoutError, StageFailedError
from vsr_stream.runtime.graph import StageSpec
from vsr_stream.runtime.interrupts import safe_points
from vsr_stream.runtime.runners import StageHandle, start
from vsr_stream.transport import Endpoints, open_socket

log = logging.getLogger(__name__)

_POLL_MS = 100
_JOIN_S = 10.0

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class RunState:
    ready: set[str] = field(default_factory=set)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)
    error: StageFailedError | None = None


class Supervisor:
    def __init__(self, cfg: PipelineConfig, specs: list[StageSpec], ep: Endpoints,
                 progress: ProgressFn | None = None, drain_on_interrupt: bool = False) -> None:
        self.cfg, self.specs, self.ep = cfg, specs, ep
        self.drain_on_interrupt = drain_on_interrupt
        self.progress = progress
        self.state = RunState()
        self.handles: list[StageHandle] = []
        self.finite = {s.name for s in specs if not s.service}

    def run(self) -> dict[str, dict[str, Any]]:
        """Run the graph to completion; returns each stage's final stats by name."""
        ctx = zmq.Context.instance() if self.cfg.transport.mode == "inproc" else zmq.Context()
        self.control = open_socket(ctx, zmq.ROUTER, self.ep.control, bind=True, hwm=10_000)
        self.directory = (open_socket(ctx, zmq.REP, self.ep.directory, bind=True, hwm=100)
                          if self.ep.directory else None)
        try:
            self.handles = [start(s, self.cfg, ctx) for s in self.specs]
            names = {s.name for s in self.specs}
            self._wait(lambda: names - self.state.ready, self.cfg.transport.ready_timeout_ms, "READY")
            self._send("decode", m.START)
            self._wait_for_end()
            self._finish_services()
            return self.state.done
        except BaseException:
            self._stop_all()
            raise
        finally:
            self._shutdown()

    def _wait_for_end(self) -> None:
        """Wait for every finite stage; with ``drain_on_interrupt`` (live inputs) a first
        KeyboardInterrupt ends the stream at the source and lets the pipeline drain instead."""
        running = lambda: self.finite - self.state.done.keys()  # noqa: E731
        # the drain goes on reading the control socket: the interrupt must not tear a message
        with safe_points(self.drain_on_interrupt) as deliver:
            try:
                self._wait(running, None, "the end of the run", deliver)
                deliver()  # one that came with the end: there is nothing left to drain
            except KeyboardInterrupt:
                if not self.drain_on_interrupt:
                    raise
                log.warning("interrupted: ending the input and draining the pipeline (interrupt again to abandon it)")
                self._send("decode", m.STOP, graceful=True)
                self._wait(running, self.cfg.transport.stall_timeout_ms, "the pipeline to drain", deliver)

    def _wait(self, missing: Callable[[], set[str]], timeout_ms: int | None, what: str,
              safe_point: Callable[[], None] | None = None) -> None:
        """Serve control messages until ``missing()`` is empty; raise on error, death or timeout.
        ``safe_point`` runs between two polls, where a held interrupt may be raised."""
        t0 = time.monotonic()
        while missing():
            if safe_point is not None:
                safe_point()
            self._poll_once()
            if self.state.error is not None:
                raise self.state.error
            self._check_alive()
            if timeout_ms is not None and (time.monotonic() - t0) * 1000 > timeout_ms:
                raise PipelineTimeoutError(
                    f"timed out after {timeout_ms} ms waiting for {what} from {sorted(missing())}")

    def _poll_once(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        if self.directory is not None:
            poller.register(self.directory, zmq.POLLIN)
        ready = dict(poller.poll(_POLL_MS))
        if self.directory is not None and self.directory in ready:
            self._answer_directory()
        while self.control in ready and self.control.poll(0):
            identity, *parts = self.control.recv_multipart(copy=False)
            self._on_control(identity.bytes.decode(), m.decode(parts))

    def _on_control(self, sender: str, msg: m.Message) -> None:
        if msg.kind == m.READY:
            self.state.ready.add(sender)
            if sender not in {s.name for s in self.specs}:
                self.state.external.add(sender)
                log.info("external worker %s joined", sender)
        elif msg.kind == m.DONE:
            self.state.done[sender] = msg.header.get("stats", {})
        elif msg.kind == m.PROGRESS and self.progress is not None:
            self.progress(msg.header)
        elif msg.kind == m.ERROR and self.state.error is None:
            self.state.error = StageFailedError(sender, msg["message"])
            self.state.error.error_type = msg["error"]
            log.debug("%s failed:\n%s", sender, msg.header.get("traceback", ""))

    def _answer_directory(self) -> None:
        from vsr_stream.runtime.workers import welcome  # tcp mode only

        request = m.decode(self.directory.recv_multipart())
        self.directory.send_multipart(m.encode(welcome(request, self.cfg, self.ep)))

    def _check_alive(self) -> None:
        for h in self.handles:
            if not h.alive() and h.name not in self.state.done and self.state.error is None:
                self._poll_once()  # its last words may still be in flight
                if self.state.error is None and h.name not in self.state.done:
                    self.state.error = StageFailedError(h.name, f"stopped unexpectedly: {h.exit_reason()}")

    def _finish_services(self) -> None:
        """End the branch workers gracefully so they report their stats."""
        services = self.state.ready - self.state.done.keys()
        for name in services:
            self._send(name, m.STOP, graceful=True)
        self._wait(lambda: services - self.state.done.keys(), _JOIN_S * 1000, "the branch workers' stats")

    def _send(self, name: str, kind: str, **fields: Any) -> None:
        try:
            self.control.send_multipart([name.encode(), *m.encode(m.control(kind, "supervisor", **fields))])
        except zmq.ZMQError as e:
            if e.errno != zmq.EHOSTUNREACH:  # the stage already left: nothing to tell it
                raise

    def _stop_all(self) -> None:
        for name in self.state.ready | self.state.external:
            self._send(name, m.STOP)

    def _shutdown(self) -> None:
        for name in self.state.ready:  # the finished ones wait for this before closing their sockets
            self._send(name, m.STOP)
        deadline = time.monotonic() + _JOIN_S
        for h in self.handles:
            h.join(max(0.0, deadline - time.monotonic()))
            if h.alive():
                log.warning("stage %s did not stop within %.0f s; killing it", h.name, _JOIN_S)
                h.kill()
        self.control.close(0)
        if self.directory is not None:
            self.directory.close(0)

