"""Passwords never reach a log line or an error message."""

from __future__ import annotations

import pytest

from vsr_stream.config import DecodeConfig
from vsr_stream.errors import SourceError
from vsr_stream.media import open_source, redact_url


@pytest.mark.parametrize(
    "url, shown",
    [
        ("rtsp://admin:s3cret@cam.local:554/live", "rtsp://admin:***@cam.local:554/live"),
        ("rtsp://admin:p@ss@cam/stream?x=1", "rtsp://admin:***@cam/stream?x=1"),
        ("srt://:token@host:9000", "srt://:***@host:9000"),
        ("rtsp://admin@cam/live", "rtsp://admin@cam/live"),
        ("http://host:8080/a:b@c.mp4", "http://host:8080/a:b@c.mp4"),
        ("/data/in:put@x.mp4", "/data/in:put@x.mp4"),
        ("clip.mkv", "clip.mkv"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_source_error_hides_the_password():
    with pytest.raises(SourceError) as info:
        open_source("rtsp://admin:s3cret@127.0.0.1:9/none", DecodeConfig())
    assert "s3cret" not in str(info.value) and "admin:***@" in str(info.value)
