"""Live-test fixtures: a real RTSP server on 127.0.0.1 (tests/live/rtsp_server.py, run with the
system /usr/bin/python3 and Debian's gst-rtsp-server), and a TCP server that never answers.

Skipped with the reason when the server's packages are not importable (``scripts/live_deps.sh``
installs them; ``.ci/run`` calls it).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
_CHECK = ("import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstApp', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "missing = [e for e in ('x264enc', 'avenc_aac', 'rtph264pay', 'videotestsrc') "
          "if not Gst.ElementFactory.find(e)]; assert not missing, f'missing GStreamer elements {missing}'")
_START_TIMEOUT_S = 15.0


@cache
def server_unavailable() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can."""
    try:
        res = subprocess.run([SYSTEM_PYTHON, "-c", _CHECK], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{SYSTEM_PYTHON} cannot run: {e}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return (f"gst-rtsp-server is not importable from {SYSTEM_PYTHON} ({last}); "
                "install it with scripts/live_deps.sh (Debian, root)")
    return None


class RtspServer:
    """The test server as a child process; ``restart()`` comes back on the same port."""

    def __init__(self, size: str = "160x96", fps: int = 25, audio: bool = True) -> None:
        self.args = ["--size", size, "--fps", str(fps), *([] if audio else ["--no-audio"])]
        self.port = 0
        self.process: subprocess.Popen | None = None

    def url(self, mount: str = "cam") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self) -> None:
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), *self.args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT_S)
        if not line or not line[0].startswith("READY "):
            err = self.stop()
            raise RuntimeError(f"the RTSP test server did not start: {line} {err}")
        self.port = int(line[0].split()[1])
        self._wait_until_serving("cam")

    def _wait_until_serving(self, mount: str) -> None:
        """Ask for ``mount``'s description until the server answers 200. The first DESCRIBE of a
        fresh server builds its first pipeline (x264 and libav loaded, then prerolled); under load
        that first answer can be an error status (FFmpeg then reports "Invalid data found"), which
        is the server warming up, not what the tests test."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        status = "no answer"
        while time.monotonic() < deadline:
            try:
                status = describe_status(self.url(mount))
            except OSError as e:
                status = f"{type(e).__name__}: {e}"
            if status.startswith("RTSP/1.0 200"):
                return
            time.sleep(0.2)
        err = self.stop()
        raise RuntimeError(f"the RTSP test server did not serve /{mount} within {_START_TIMEOUT_S} s "
                           f"(last answer: {status}) {err}")

    def stop(self) -> str:
        """Kill the server (SIGKILL: like a camera losing power); returns its stderr."""
        if self.process is None:
            return ""
        self.process.kill()
        _, err = self.process.communicate(timeout=10)
        self.process = None
        return err

    def restart(self) -> None:
        self.stop()
        self.start()


def describe_status(url: str) -> str:
    """The status line of the server's answer to one RTSP DESCRIBE of ``url`` (its body is read and
    dropped, then the connection closed, so a per-client pipeline is torn down again)."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0)
        while len(body) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            body += chunk
        return lines[0]


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A started RTSP server with the /cam, /relay and /relay-view mounts."""
    reason = server_unavailable()
    if reason:
        pytest.skip(reason)
    server = RtspServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """rtsp:// URL of a TCP server that accepts connections and never answers (a stalled camera)."""
    with StatusServer(None) as server:
        yield server.url


class StatusServer:
    """An RTSP server that answers every request with one fixed status (``status``, changeable;
    None: accepts and never answers) and counts the connections it accepted; ``url`` carries a
    password to check redaction."""

    def __init__(self, status: str | None) -> None:
        self.status = status
        self.connections = 0
        self._held: list[socket.socket] = []  # silent connections, open until exit
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.url = f"rtsp://user:secret@127.0.0.1:{self._listener.getsockname()[1]}/cam"

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()[0]
            except TimeoutError:
                continue
            self.connections += 1
            if self.status is None:
                self._held.append(conn)
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client hung up: the next connection is the next attempt

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
            while b"\r\n\r\n" in data:
                head, _, data = data.partition(b"\r\n\r\n")
                cseq = next((line.split(":", 1)[1].strip() for line in head.decode("latin-1").split("\r\n")
                             if line.lower().startswith("cseq:")), "1")
                conn.sendall(f"RTSP/1.0 {self.status}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n".encode())

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._listener.close()


@pytest.fixture
def status_server() -> Iterator[type[StatusServer]]:
    """The :class:`StatusServer` class, to be used as ``with status_server("503 ...") as server``."""
    return StatusServer
