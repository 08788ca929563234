"""Where each socket lives: endpoint names per transport mode, and socket helpers.

Stable parts bind (classify's per-class tile fan-out, stitch's and encode's fan-in, the
supervisor's control socket); dynamic parts connect (decode, branch workers). In tcp mode
the supervisor also answers on a directory socket, so an external worker needs one address.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from dataclasses import dataclass, field

import zmq

from vsr_stream.config import TransportConfig

# Fixed port offsets from TransportConfig.port in tcp mode.
_TCP_OFFSETS = {"directory": 0, "classify_in": 1, "stitch_in": 2, "encode_in": 3, "control": 4}
_TCP_TILES_OFFSET = 10


@dataclass(frozen=True)
class Endpoints:
    """Addresses of every bound socket of one pipeline run."""

    control: str
    classify_in: str
    stitch_in: str
    encode_in: str
    tiles: tuple[str, ...]
    directory: str | None = None
    ipc_dir: str | None = field(default=None, compare=False)

    def all_bound(self) -> list[str]:
        return [self.control, self.classify_in, self.stitch_in, self.encode_in, *self.tiles]


def make_endpoints(cfg: TransportConfig, n_classes: int) -> Endpoints:
    """Endpoints for ``cfg.mode``; ipc paths live in a fresh private temp dir."""
    if cfg.mode == "inproc":
        run = uuid.uuid4().hex[:12]
        name = lambda s: f"inproc://vsr-{run}-{s}"  # noqa: E731
        return Endpoints(name("control"), name("classify"), name("stitch"), name("encode"),
                         tuple(name(f"tiles{k}") for k in range(n_classes)))
    if cfg.mode == "ipc":
        d = tempfile.mkdtemp(prefix="vsr-ipc-")
        name = lambda s: f"ipc://{os.path.join(d, s)}"  # noqa: E731
        return Endpoints(name("control"), name("classify"), name("stitch"), name("encode"),
                         tuple(name(f"tiles{k}") for k in range(n_classes)), ipc_dir=d)
    base = cfg.port or _free_port_block(cfg.host, _TCP_TILES_OFFSET + n_classes)
    tcp = lambda off: f"tcp://{cfg.host}:{base + off}"  # noqa: E731
    o = _TCP_OFFSETS
    return Endpoints(tcp(o["control"]), tcp(o["classify_in"]), tcp(o["stitch_in"]), tcp(o["encode_in"]),
                     tuple(tcp(_TCP_TILES_OFFSET + k) for k in range(n_classes)), directory=tcp(o["directory"]))


def _free_port_block(host: str, count: int) -> int:
    """A base port such that base..base+count-1 are free right now (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + count < 65535 and all(_port_free(host, base + i) for i in range(count)):
            return base
    raise OSError(f"no block of {count} free TCP ports on {host}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def open_socket(ctx: zmq.Context, kind: int, address: str, *, bind: bool, hwm: int,
                identity: str | None = None) -> zmq.Socket:
    """Create, configure and bind or connect a socket; the caller owns and closes it."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity.encode())
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    try:
        (sock.bind if bind else sock.connect)(address)
    except zmq.ZMQError:
        sock.close(0)
        raise
    return sock


def rehost(address: str, host: str) -> str:
    """Replace the host of a tcp:// address (a worker reaching a pipeline bound on 0.0.0.0)."""
    if not address.startswith("tcp://"):
        return address
    port = address.rsplit(":", 1)[1]
    return f"tcp://{host}:{port}"
