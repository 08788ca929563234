"""External branch workers (tcp mode): the directory's answer, and the worker's side of it.

A worker started with ``vsr-stream worker --connect tcp://HOST:PORT --class K`` asks the
pipeline's directory (REQ → REP) for its addresses and the run's config, then runs the same
upscale stage as a built-in worker: it connects to class K's tile fan-out and to the stitcher,
reports READY to the supervisor, and exits on the supervisor's STOP at the end of the run.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlsplit

import zmq

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig, deep_merge
from vsr_stream.errors import ConfigError, PipelineTimeoutError, ProtocolError
from vsr_stream.runtime.graph import worker_spec
from vsr_stream.stage import Wiring, run_stage
from vsr_stream.stages.upscale import UpscaleStage
from vsr_stream.transport import Endpoints, open_socket, rehost

log = logging.getLogger(__name__)


def welcome(request: m.Message, cfg: PipelineConfig, ep: Endpoints) -> m.Message:
    """The directory's reply to a HELLO: addresses for the asked class and the run's config."""
    if request.kind != m.HELLO:
        return m.control(m.ERROR, "directory", error="ProtocolError", message=f"expected hello, got {request.kind}")
    cls = request.header.get("cls")
    if not isinstance(cls, int) or not 0 <= cls < cfg.n_classes:
        return m.control(m.ERROR, "directory", error="ConfigError",
                         message=f"class {cls!r} does not exist; this pipeline has classes 0..{cfg.n_classes - 1}")
    return m.control(m.WELCOME, "directory", tiles=ep.tiles[cls], results=ep.stitch_in, control=ep.control,
                     config=cfg.model_dump(mode="json"))


def ask_directory(address: str, cls: int, timeout_ms: int) -> m.Message:
    """HELLO → WELCOME with the pipeline at ``address``; raises when it does not answer in time."""
    ctx = zmq.Context.instance()
    req = open_socket(ctx, zmq.REQ, address, bind=False, hwm=10)
    try:
        req.send_multipart(m.encode(m.control(m.HELLO, "worker", cls=cls)))
        if not req.poll(timeout_ms):
            raise PipelineTimeoutError(f"no pipeline answered at {address} within {timeout_ms} ms")
        reply = m.decode(req.recv_multipart())
    finally:
        req.close(0)
    if reply.kind == m.ERROR:
        raise ConfigError(f"the pipeline refused: {reply['message']}")
    if reply.kind != m.WELCOME:
        raise ProtocolError(f"expected welcome from {address}, got {reply.kind}")
    return reply


def run_external_worker(address: str, cls: int, device: str | None = None, timeout_ms: int = 10_000) -> None:
    """Join the pipeline at ``address`` as one class-``cls`` worker until it says STOP."""
    reply = ask_directory(address, cls, timeout_ms)
    host = urlsplit(address).hostname or "127.0.0.1"
    data = reply["config"]
    if device is not None:
        branches = data["upscale"]["branches"]
        branches[cls] = deep_merge(branches[cls], {"device": device})
    cfg = PipelineConfig.model_validate(data)
    t = cfg.transport
    wiring = Wiring(control=rehost(reply["control"], host), hwm=t.queue_msgs, stall_timeout_ms=t.stall_timeout_ms)
    worker_id = f"ext-{socket.gethostname()}-{os.getpid()}"
    spec = worker_spec(wiring, rehost(reply["tiles"], host), rehost(reply["results"], host), cls, worker_id)
    log.info("joining %s as %s", address, spec.name)
    run_stage(spec.name, lambda: UpscaleStage(cfg, cls, worker_id), spec.wiring, zmq.Context.instance())
