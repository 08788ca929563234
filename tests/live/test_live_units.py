"""The live pieces without the RTSP test server: timestamp rebasing, backoff, waiting for a stream to
open (against a socket that answers one fixed status), the ingest queue, latency, live sinks."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.system.conftest import run_cli
from vsr_stream.config import DecodeConfig, EncodeConfig
from vsr_stream.errors import SinkError, SourceError
from vsr_stream.media.items import PacketItem, SourceInfo, VideoFrameItem, VideoInfo
from vsr_stream.media.live_source import LiveSource, Timeline, backoff_delays_ms
from vsr_stream.media.sink import check_output, open_sink
from vsr_stream.media.urls import is_live_url
from vsr_stream.runtime.latency import LatencyMeter
from vsr_stream.stages.ingest import Ingest

TB = Fraction(1, 90_000)
PICTURE = np.zeros((8, 8, 3), np.uint8)


def frame(pts: int | None, tb: Fraction = TB) -> VideoFrameItem:
    return VideoFrameItem(0, pts, tb, 3600, PICTURE)


def audio(pts: int) -> PacketItem:
    return PacketItem(1, pts, pts, 1024, Fraction(1, 48_000), True, b"x")


def info(live: bool = True, rate: Fraction | None = Fraction(25)) -> SourceInfo:
    video = VideoInfo(width=8, height=8, time_base=TB, frame_rate=rate, pix_fmt="yuv420p", bit_depth=8)
    return SourceInfo(url="rtsp://cam", kind="video", video=video, live=live)


def test_timeline_continues_across_a_restart_at_zero_with_audio_moved_alike():
    t = Timeline(TB, Fraction(25))
    first = [t.frame(frame(p)).pts for p in (None, 3600, 7200)]  # the first frame has no pts
    assert first == [0, 3600, 7200]
    t.new_connection()  # the server restarted: its clock starts again, with audio first
    moved = t.packet(audio(0))
    second = [t.frame(frame(p)).pts for p in (1800, 5400)]
    assert second == [10_800 + 1800, 10_800 + 5400]  # one frame after the last, offset by the audio anchor
    assert moved.pts * moved.time_base == Fraction(10_800, 90_000)


def test_timeline_first_frame_without_pts_after_audio():
    t = Timeline(TB, Fraction(25))
    assert t.packet(audio(0)).pts == 0
    assert [t.frame(frame(p)).pts for p in (None, 4000)] == [0, 4000]


def test_timeline_handles_negative_start_and_never_goes_back():
    t = Timeline(TB, Fraction(25))
    assert t.frame(frame(-7200)).pts == 0
    assert t.frame(frame(-7200)).pts == 1  # a repeated timestamp is nudged forward
    assert t.frame(frame(-3600)).pts == 3600
    assert t.packet(audio(0)) is not None
    assert t.packet(audio(-48_000)) is None and t.packets_dropped == 1


def test_timeline_converts_to_the_first_connections_time_base():
    t = Timeline(TB, Fraction(25))
    out = t.frame(frame(40, Fraction(1, 1000)))
    assert (out.pts, out.time_base, out.duration) == (0, TB, round(3600 * Fraction(1, 1000) / TB))


def test_backoff_doubles_to_the_cap_with_jitter():
    delays = backoff_delays_ms(100, 1000, random.Random(1))
    got = [next(delays) for _ in range(8)]
    for d, nominal in zip(got, [100, 200, 400, 800, 1000, 1000, 1000, 1000]):
        assert nominal / 2 <= d <= nominal
    assert len(set(got[4:])) == 4  # jittered, not in step


class _ListSource:
    def __init__(self, items, rate=Fraction(25)) -> None:
        self.info = info(rate=rate)
        self._items = items

    def items(self):
        yield from self._items


def _drain(ingest: Ingest) -> list:
    got = []
    while True:
        try:
            entry = ingest.get(1.0)
        except EOFError:
            return got
        if entry is not None:
            got.append(entry[0])


def test_ingest_drop_oldest_keeps_newest_frames_and_every_packet():
    items = [frame(i * 3600) for i in range(20)] + [audio(0), frame(20 * 3600)]
    ingest = Ingest(_ListSource(items), "drop_oldest", budget_ms=80)  # capacity 2 frames at 25 fps
    ingest.start()
    ingest.thread.join(5)  # the reader outruns a consumer that has not started
    got = _drain(ingest)
    frames = [g.pts for g in got if isinstance(g, VideoFrameItem)]
    assert ingest.capacity == 2 and ingest.peak_frames <= 2
    assert frames == [19 * 3600, 20 * 3600] and ingest.drops == 19
    assert any(isinstance(g, PacketItem) for g in got)


def test_ingest_drops_frames_older_than_the_budget_at_get():
    ingest = Ingest(_ListSource([frame(0), frame(3600)]), "drop_oldest", budget_ms=1000)
    ingest.start()
    ingest.thread.join(5)
    ingest.budget_s = 0.0  # everything queued is now stale
    time.sleep(0.01)
    assert _drain(ingest) == [] and ingest.drops == 2


def test_ingest_block_policy_drops_nothing():
    items = [frame(i * 3600) for i in range(30)]
    ingest = Ingest(_ListSource(items), "block", budget_ms=1)
    ingest.start()
    got = _drain(ingest)
    assert len(got) == 30 and ingest.drops == 0 and ingest.peak_frames <= ingest.capacity


def test_ingest_hands_the_source_error_to_the_stage():
    def failing():
        yield frame(0)
        raise OSError("camera gone")

    source = _ListSource([])
    source.items = failing
    ingest = Ingest(source, "block", budget_ms=1000)
    ingest.start()
    assert ingest.get(5)[0].pts == 0
    with pytest.raises(OSError, match="camera gone"):
        ingest.get(5)


def test_latency_meter_pairs_either_order_and_bounds_memory():
    meter = LatencyMeter(keep=10)
    for i in range(100):
        if i % 2:
            meter.ingested(i, 0.0)
            meter.encoded(i, 0.010)
        else:
            meter.encoded(i, 0.030)
            meter.ingested(i, 0.0)
    s = meter.summary()
    assert s["latency_frames"] == 100 and len(meter.sample_s) == 10
    assert 10 <= s["latency_median_ms"] <= 30 and s["latency_p95_ms"] == pytest.approx(30, abs=1e-6)
    assert LatencyMeter().summary()["latency_median_ms"] is None


@pytest.mark.parametrize("url, live", [("rtsp://u:p@cam/x", True), ("RTSP://cam", True), ("srt://h:1", True),
                                       ("udp://239.0.0.1:5000", True), ("http://h/a.mp4", False),
                                       ("/tmp/a.mp4", False), ("file://a.mkv", False)])
def test_is_live_url(url, live):
    assert is_live_url(url) is live


def test_live_recording_must_be_mkv_or_ts(tmp_path):
    with pytest.raises(SinkError, match="mkv or .ts"):
        check_output(str(tmp_path / "rec.mp4"), overwrite=False, live=True)
    check_output(str(tmp_path / "rec.ts"), overwrite=False, live=True)
    check_output("rtsp://server/out", overwrite=False, live=True)
    with pytest.raises(SinkError, match="cannot publish"):
        check_output("http://server/out", overwrite=False)


@pytest.mark.parametrize("suffix", [".mkv", ".ts"])
def test_live_recording_is_written_in_place_and_kept_on_failure(tmp_path, suffix):
    out = tmp_path / f"rec{suffix}"
    sink = open_sink(str(out), EncodeConfig(), info(), 1)
    for i in range(30):
        picture = np.full((64, 96, 3), i * 8, np.uint8)
        sink.write_frame(VideoFrameItem(i, i * 3600, TB, 3600, picture))
    assert out.exists()  # in place, not under a temporary name
    sink.abort()  # the run failed later
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) == 30
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_finite_job_still_uses_a_temporary_name(tmp_path):
    out = tmp_path / "file.mkv"
    sink = open_sink(str(out), EncodeConfig(), replace(info(live=False)), 1)
    sink.write_frame(VideoFrameItem(0, 0, TB, 3600, np.zeros((64, 96, 3), np.uint8)))
    assert not out.exists()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_frame_and_duration_limits_on_a_file(tmp_path):
    import vsr_stream
    from vsr_stream.media.synth import write_clip

    clip = write_clip(tmp_path / "c.mkv", width=48, height=32, frames=12)  # 24 fps
    by_frames = vsr_stream.upscale(clip, tmp_path / "f.mkv", scale=2, overrides={"decode": {"max_frames": 5}})
    by_time = vsr_stream.upscale(clip, tmp_path / "d.mkv", scale=2, overrides={"decode": {"max_duration_s": 0.25}})
    assert by_frames.frames == 5
    assert by_time.frames == 6  # frames starting before 0.25 s: 0, 1/24, ..., 5/24
    assert by_frames.latency_median_ms is not None and by_frames.ingest_drops == 0


FAST_RETRY = {"reconnect_delay_ms": 100, "reconnect_delay_max_ms": 400, "open_timeout_ms": 2000}


def test_first_open_fails_at_once_by_default(status_server):
    with status_server("503 Service Unavailable") as server:
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="5XX") as caught:
            LiveSource(server.url, DecodeConfig(**FAST_RETRY))
    assert time.monotonic() - t0 < 2 and server.connections == 1
    assert "secret" not in str(caught.value)


def test_first_open_waits_for_an_unavailable_stream_then_gives_up(status_server):
    with status_server("503 Service Unavailable") as server:
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"did not open in .* retries \(decode.wait_for_stream_ms=1500\)"):
            LiveSource(server.url, DecodeConfig(wait_for_stream_ms=1500, **FAST_RETRY))
    assert 0.7 < time.monotonic() - t0 < 5
    assert server.connections >= 3


def test_first_open_never_retries_a_refused_login(status_server):
    with status_server("401 Unauthorized") as server:
        with pytest.raises(SourceError, match="401") as caught:
            LiveSource(server.url, DecodeConfig(wait_for_stream_ms=10_000, **FAST_RETRY))
    assert server.connections == 1 and "secret" not in str(caught.value)


def test_first_open_stops_waiting_on_a_refused_login_mid_wait(status_server):
    with status_server("503 Service Unavailable") as server:
        refuse = threading.Timer(0.5, lambda: setattr(server, "status", "403 Forbidden"))
        refuse.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(SourceError, match="403"):
                LiveSource(server.url, DecodeConfig(wait_for_stream_ms=20_000, **FAST_RETRY))
        finally:
            refuse.cancel()
    assert time.monotonic() - t0 < 5 and server.connections >= 2


def test_cli_wait_for_stream_retries_then_fails_cleanly(status_server, tmp_path):
    out = tmp_path / "never.mkv"
    with status_server("503 Service Unavailable") as server:
        done = run_cli("upscale", server.url, str(out), "--scale", "2", "--wait-for-stream", "1.5", "--quiet")
    assert done.returncode != 0 and server.connections >= 2
    assert "did not open in" in done.stderr and "wait_for_stream_ms=1500" in done.stderr
    assert "secret" not in done.stderr and not out.exists()
