"""Live RTSP input and output against a real server (tests/live/rtsp_server.py on 127.0.0.1).

The camera mount sends 160×96 H.264 + AAC at 25 fps. Every run is bounded by a frame limit and
every wait by a timeout, so a broken test fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import pytest
import torch

import vsr_stream
from tests.live.conftest import RtspServer, server_unavailable
from tests.system.conftest import REPO
from vsr_stream.errors import SourceError
from vsr_stream.models import ModelDescriptor, register
from vsr_stream.models.registry import get

FAST_RECONNECT = {"read_timeout_ms": 1500, "open_timeout_ms": 3000, "reconnect_delay_ms": 100,
                  "reconnect_delay_max_ms": 400, "give_up_after_ms": 20_000}


def video_of(path) -> tuple[list[int], tuple[int, int], list[str]]:
    """Decoded video pts, (width, height), and the stream types of a recording."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.pts for f in c.decode(s)]
        return pts, (s.codec_context.width, s.codec_context.height), [st.type for st in c.streams]


def increasing(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def run_in_thread(*args, **kwargs) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        try:
            result["report"] = vsr_stream.upscale(*args, **kwargs)
        except BaseException as e:  # handed to the test thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_steady_stream_gives_frame_count_size_and_audio(rtsp_server, tmp_path):
    out = tmp_path / "cam.mkv"
    report = vsr_stream.upscale(rtsp_server.url(), out, scale=2,
                                overrides={"decode": {"max_frames": 20, "live_policy": "block"}})
    pts, size, streams = video_of(out)
    assert report.frames == len(pts) == 20
    assert size == (320, 192)
    assert increasing(pts)
    assert streams == ["video", "audio"] and report.passthrough_packets > 0
    assert report.ingest_drops == 0 and report.reconnects == 0
    assert report.latency_median_ms is not None


def test_camera_that_comes_up_late_is_waited_for(tmp_path):
    reason = server_unavailable()
    if reason:
        pytest.skip(reason)
    with socket.create_server(("127.0.0.1", 0)) as probe:  # a free port, closed again: connections are refused
        port = probe.getsockname()[1]
    server = RtspServer()
    server.port = port
    out = tmp_path / "late.mkv"
    late = threading.Timer(2.0, server.start)
    late.start()
    try:
        report = vsr_stream.upscale(f"rtsp://127.0.0.1:{port}/cam", out, scale=2,
                                    overrides={"decode": {"max_frames": 10, "live_policy": "block",
                                                          **FAST_RECONNECT, "wait_for_stream_ms": 30_000}})
    finally:
        late.join(30)
        server.stop()
    pts, size, _ = video_of(out)
    assert report.frames == len(pts) == 10 and size == (320, 192)
    assert report.reconnects == 0


@pytest.mark.parametrize("rtsp_transport, mode", [("udp", "inproc"), ("tcp", "ipc"), ("tcp", "fused")])
def test_steady_stream_over_udp_and_in_every_runner(rtsp_server, tmp_path, rtsp_transport, mode):
    """RTP over UDP as well as TCP, and a live input with the stages as processes or fused."""
    out = tmp_path / "cam.mkv"
    report = vsr_stream.upscale(rtsp_server.url(), out, scale=2, overrides={
        "decode": {"max_frames": 12, "live_policy": "block", "rtsp_transport": rtsp_transport},
        "transport": {"mode": mode}})
    pts, size, streams = video_of(out)
    assert report.frames == len(pts) == 12
    assert size == (320, 192)
    assert increasing(pts)
    assert streams == ["video", "audio"]
    assert report.ingest_drops == 0


def test_resolution_change_mid_stream_is_fitted_to_the_first_size(rtsp_server, tmp_path):
    """/switch doubles its picture size after 1.5 s: tiles follow the new size, the output keeps the first."""
    out = tmp_path / "switch.mkv"
    report = vsr_stream.upscale(rtsp_server.url("switch"), out, scale=2,
                                overrides={"decode": {"max_frames": 75, "live_policy": "block"}})
    pts, size, _ = video_of(out)
    assert report.frames == len(pts) == 75
    assert size == (320, 192)
    assert increasing(pts)
    assert 0 < report.resized_frames < 75
    with av.open(str(out)) as container:
        assert {(f.width, f.height) for f in container.decode(video=0)} == {(320, 192)}


def test_server_restart_mid_stream_reconnects_with_monotonic_timestamps(rtsp_server, tmp_path):
    out = tmp_path / "restart.mkv"
    started = threading.Event()
    # drop_oldest (the live default) keeps the reader at the network's pace, so the kill is seen at once.
    thread, result = run_in_thread(
        rtsp_server.url(), out, scale=2, progress=lambda done, total: done >= 3 and started.set(),
        overrides={"decode": {"max_frames": 75, **FAST_RECONNECT}})  # 3 s of stream: more than the run lags
    assert started.wait(30), result
    rtsp_server.restart()  # SIGKILL, then the same port again
    thread.join(60)
    assert not thread.is_alive(), "the pipeline did not finish after the server came back"
    report = result.get("report") or pytest.fail(f"run failed: {result.get('error')!r}")
    assert report.reconnects >= 1
    pts, size, _ = video_of(out)
    assert report.frames == len(pts) == 75 and size == (320, 192)
    assert increasing(pts)


class _Slow(torch.nn.Module):
    """Nearest-neighbour upscaling that takes at least 0.2 s per batch: far slower than 25 fps."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.2)
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


def _register_slow() -> None:
    try:
        get("test-slow")
    except LookupError:
        register(ModelDescriptor(name="test-slow", scales=(2,), builder=_Slow, learned=False, supports_half=False,
                                 receptive_radius_px=0, min_size_px=1, description="sleeps (tests)", family="test"))


def test_slow_upscaling_drops_at_ingest_only_and_reports_latency(rtsp_server, tmp_path):
    _register_slow()
    out = tmp_path / "slow.ts"
    report = vsr_stream.upscale(rtsp_server.url(), out, scale=2, overrides={
        "decode": {"max_frames": 8, "latency_budget_ms": 200},
        "upscale": {"branches": [{"model": "test-slow", "max_batch": 256}]}})
    decode, encode = report.stages["decode"], report.stages["encode"]
    assert report.ingest_drops == decode["ingest_drops"] > 0
    assert decode["ingest_peak_frames"] <= decode["ingest_capacity"] == 5  # 0.2 s at 25 fps
    # Nothing is lost inside the pipeline: every frame that entered it was written.
    assert decode["frames"] == report.stages["classify"]["frames"] == encode["frames"] == report.frames == 8
    assert report.latency_median_ms is not None and report.latency_p95_ms >= report.latency_median_ms > 0
    assert "dropped at ingest" in report.summary()
    pts, _, _ = video_of(out)
    assert len(pts) == 8 and increasing(pts)


def read_frames(url: str, count: int, deadline_s: float) -> list[tuple[int, int]]:
    """(width, height) of the first ``count`` frames at ``url``, retrying the connection until
    ``deadline_s`` (the relay answers only once its publisher is streaming)."""
    while True:
        try:
            with av.open(url, options={"rtsp_transport": "tcp", "timeout": "3000000"}, timeout=(5, 3)) as c:
                frames = []
                for f in c.decode(video=0):
                    frames.append((f.width, f.height))
                    if len(frames) == count:
                        return frames
        except av.error.FFmpegError:
            if time.monotonic() > deadline_s:
                raise
            time.sleep(0.3)


def test_upscaled_stream_published_to_relay_and_read_back(rtsp_server):
    publishing, deadline = threading.Event(), time.monotonic() + 30
    thread, result = run_in_thread(rtsp_server.url(), rtsp_server.url("relay"), scale=2,
                                   progress=lambda done, total: done >= 3 and publishing.set(),
                                   overrides={"decode": {"max_frames": 90}})
    while not publishing.wait(0.2):
        assert thread.is_alive() and time.monotonic() < deadline, result
    frames = read_frames(rtsp_server.url("relay-view"), 5, time.monotonic() + 15)
    thread.join(60)
    assert frames == [(320, 192)] * 5
    assert "error" not in result, result
    assert result["report"].output == rtsp_server.url("relay")


def test_stalled_server_fails_with_clear_error_not_a_hang(silent_server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(SourceError) as caught:
        vsr_stream.upscale(silent_server, tmp_path / "never.mkv", scale=2,
                           overrides={"decode": {"open_timeout_ms": 1000, "read_timeout_ms": 1000}})
    assert time.monotonic() - t0 < 20
    message = str(caught.value)
    assert "cannot open the stream" in message and "timeout" in message
    assert "secret" not in message and "user:***@" in message
    assert list(tmp_path.iterdir()) == []


def _start_cli(url: str, out) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "vsr_stream.cli", "upscale", url, str(out), "--scale", "2",
                             "--quiet", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_frames(out, process: subprocess.Popen, count: int, timeout_s: float = 90) -> None:
    """Until the recording on disk decodes to at least ``count`` frames (it is written in place)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if out.exists() and len(video_of(out)[0]) >= count:
                return
        except (av.error.FFmpegError, IndexError):
            pass  # not even the header yet
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"no {count} frames in {out}: {process.communicate(timeout=10)[1]}")


def test_sigterm_drains_and_finalises_the_recording(rtsp_server, tmp_path):
    out = tmp_path / "term.mkv"
    process = _start_cli(rtsp_server.url(), out)
    _wait_for_frames(out, process, 5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    pts, size, _ = video_of(out)
    assert report["frames"] == len(pts) >= 5 and size == (320, 192) and increasing(pts)


def test_killed_run_leaves_a_readable_recording(rtsp_server, tmp_path):
    out = tmp_path / "killed.ts"
    process = _start_cli(rtsp_server.url(), out)
    _wait_for_frames(out, process, 5)
    process.kill()
    process.communicate(timeout=10)
    pts, size, _ = video_of(out)
    assert len(pts) >= 5 and size == (320, 192)
