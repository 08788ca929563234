"""Bad input, bad output, bad config, full disk, dying stages: one clear message, a non-zero
exit, no output left behind, and no hang (every subprocess has a timeout)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import vsr_stream
from tests.system.conftest import REPO, run_cli
from vsr_stream.errors import SinkError, SourceError, StageFailedError
from vsr_stream.media.synth import write_clip


def assert_clean_failure(res: subprocess.CompletedProcess, out_dir: Path, code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1] == errors[0], res.stderr  # the error is the last thing printed
    for w in words:
        assert w.lower() in errors[0].lower(), errors[0]
    assert "Traceback" not in res.stderr
    leftovers = [p.name for p in out_dir.iterdir()]
    assert leftovers == [], leftovers


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def make_bad(tmp_path: Path, av_clip: Path, kind: str) -> Path:
    p = tmp_path / f"{kind}.mp4"
    data = av_clip.read_bytes()
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random":
        p.write_bytes(os.urandom(20_000))
    elif kind == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif kind == "bitflip":
        flipped = bytearray(data)
        for i in range(len(data) // 3, len(data) // 3 + 64):
            flipped[i] ^= 0xFF
        p.write_bytes(bytes(flipped))
    return p


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "truncated", "bitflip"])
def test_bad_input(av_clip, tmp_path, out_dir, kind):
    src = make_bad(tmp_path, av_clip, kind)
    res = run_cli("upscale", str(src), str(out_dir / "o.mp4"), "--scale", "2", "--quiet", timeout=60)
    assert_clean_failure(res, out_dir, 1, src.name)


def test_truncated_mkv(tmp_path, out_dir):
    src = write_clip(tmp_path / "t.mkv", frames=24)
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.6)])
    res = run_cli("upscale", str(src), str(out_dir / "o.mkv"), "--scale", "2", "--quiet", timeout=60)
    assert_clean_failure(res, out_dir, 1, "t.mkv")


def test_unwritable_outputs(av_clip, tmp_path, out_dir):
    res = run_cli("upscale", str(av_clip), str(out_dir / "no" / "such" / "dir.mp4"), "--quiet")
    assert_clean_failure(res, out_dir, 1, "dir")
    a_file = out_dir / "file"
    a_file.write_text("x")
    res = run_cli("upscale", str(av_clip), str(a_file / "o.mp4"), "--quiet")
    a_file.unlink()
    assert_clean_failure(res, out_dir, 1)


def test_existing_output_needs_overwrite(av_clip, out_dir):
    target = out_dir / "o.mp4"
    target.write_bytes(b"keep me")
    res = run_cli("upscale", str(av_clip), str(target), "--scale", "2", "--quiet")
    assert res.returncode != 0 and "overwrite" in res.stderr
    assert target.read_bytes() == b"keep me"
    res = run_cli("upscale", str(av_clip), str(target), "--scale", "2", "--quiet", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert target.stat().st_size > 1000


@pytest.mark.parametrize("text,words", [
    ("[tiling]\ntile_px = 32\nbogus = 1\n", ["tiling.bogus"]),
    ("[encode]\ncrf = 99\n", ["encode.crf"]),
    ("[tiling]\ntile_px = 8\noverlap_px = 8\n", ["overlap_px"]),
    ("[classify]\ntvat_thresholds = [10.0]\n", ["tvat_thresholds", "branches"]),
    ("[[upscale.branches]]\nmodel = 'nope'\n", ["nope"]),
    ("[[upscale.branches]]\nmodel = 'fsrcnn-56'\n", ["weights"]),
    ("this is = = not toml", ["toml"]),
])
def test_bad_config(av_clip, tmp_path, out_dir, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    res = run_cli("upscale", str(av_clip), str(out_dir / "o.mp4"), "--config", str(cfg), "--quiet")
    assert_clean_failure(res, out_dir, 2, *words)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def test_full_disk_file_size_limit(av_clip, out_dir):
    res = run_cli("upscale", str(av_clip), str(out_dir / "o.mkv"), "--scale", "4", "--lossless", "--quiet",
                  preexec_fn=_limit_file_size)
    assert_clean_failure(res, out_dir, 1)


def test_full_disk_tmpfs(av_clip, tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root and mount(8)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not permitted in this sandbox")
    try:
        res = run_cli("upscale", str(av_clip), str(mnt / "o.mkv"), "--scale", "4", "--lossless", "--quiet")
        assert_clean_failure(res, mnt, 1)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _ctrl_c_default() -> None:
    """In the child: SIGINT as a terminal delivers it. A test run started in the background
    (``cmd &`` without job control) ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler: the Ctrl-C this test sends would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until_writing(out_dir: Path, proc: subprocess.Popen, settle_s: float = 1.0) -> None:
    """Wait until the run has opened its (temporary) output, then a little more: the signal then
    lands mid-run on a slow machine and on a fast one alike (a fixed sleep could land while the
    output was being finished, where a complete file is rightly kept)."""
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never opened its output"
        time.sleep(0.05)
    time.sleep(settle_s)
    assert proc.poll() is None, "the run ended before it could be interrupted; make the clip longer"


@pytest.mark.parametrize("sig,mode", [(signal.SIGINT, "inproc"), (signal.SIGTERM, "inproc"), (signal.SIGINT, "ipc"),
                                      (signal.SIGINT, "fused")])
def test_interrupt_leaves_nothing(tmp_path, out_dir, sig, mode):
    src = write_clip(tmp_path / "long.mp4", width=160, height=96, frames=400)
    proc = subprocess.Popen([sys.executable, "-m", "vsr_stream.cli", "upscale", str(src), str(out_dir / "o.mp4"),
                             "--scale", "4", "--quiet", "--transport", mode],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_default)
    _wait_until_writing(out_dir, proc)
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)  # Ctrl-C hits the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err or "SIGTERM" in err, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert list(out_dir.iterdir()) == []


def test_dying_worker_process_stops_the_run(tmp_path, out_dir):
    """Kill a branch worker process mid-run: the supervisor notices, stops all, keeps nothing."""
    import multiprocessing as mp

    src = write_clip(tmp_path / "long.mp4", width=160, height=96, frames=120)
    killed = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for child in mp.active_children():
                if child.name == "vsr-upscale0.0" and child.is_alive():
                    time.sleep(1.5)
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.name)
                    return
            time.sleep(0.05)

    threading.Thread(target=killer, daemon=True).start()
    with pytest.raises(StageFailedError, match="upscale0.0"):
        vsr_stream.upscale(src, out_dir / "o.mp4", scale=4, overrides={"transport": {"mode": "ipc"}})
    assert killed and list(out_dir.iterdir()) == []


def test_failing_stage_in_thread_mode(av_clip, out_dir):
    """A branch model that raises mid-run: one StageFailedError naming the stage and the reason."""
    import torch

    from vsr_stream.models import ModelDescriptor, register
    from vsr_stream.models.registry import get

    class Exploding(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in forward")

    try:
        get("test-exploding")
    except LookupError:
        register(ModelDescriptor(name="test-exploding", scales=(2,), builder=lambda s: Exploding(), learned=False,
                                 supports_half=False, receptive_radius_px=0, min_size_px=1,
                                 description="raises (tests)", family="test"))
    with pytest.raises(StageFailedError, match="upscale0.0.*boom in forward"):
        vsr_stream.upscale(av_clip, out_dir / "o.mp4", scale=2,
                           overrides={"upscale": {"branches": [{"model": "test-exploding"}]},
                                      "transport": {"mode": "inproc"}})
    assert list(out_dir.iterdir()) == []


def test_api_raises_typed_errors(tmp_path, out_dir):
    with pytest.raises(SourceError):
        vsr_stream.upscale(tmp_path / "missing.mp4", out_dir / "o.mp4")
    src = write_clip(tmp_path / "ok.mp4")
    with pytest.raises(SinkError):
        vsr_stream.upscale(src, out_dir / "missing_dir" / "o.mp4")
