"""System-test helpers: generated clips, reading outputs back, running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from vsr_stream.media.synth import write_clip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def av_clip(clip_dir) -> Path:
    """96×64, 12 frames at 24 fps, H.264 + AAC, mp4."""
    return write_clip(clip_dir / "av.mp4", width=96, height=64, frames=12)


def video_pts(path: Path) -> tuple[list[int], Fraction, tuple[int, int]]:
    """Decoded video frame pts, the stream time base, and (width, height)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.pts for f in c.decode(s)]
        return pts, s.time_base, (s.codec_context.width, s.codec_context.height)


def packets(path: Path, kind: str) -> list[tuple[int | None, Fraction, bytes]]:
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(p.pts, p.time_base, bytes(p)) for p in c.demux(s) if p.size]


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "vsr_stream.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ, **kw)
