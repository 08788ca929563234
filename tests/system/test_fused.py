"""Fused mode (transport.mode = "fused"): the staged pipeline's output from one loop, the frame
kept on the device from its one upload to its one download, and the same errors and report."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

import vsr_stream
from tests.kernels import emulated_cupy
from tests.kernels.conftest import emulated, gxx, harness_binary, harness_sanitized  # noqa: F401 (fixtures)
from tests.system.conftest import packets
from vsr_stream.config import BranchConfig, load_config
from vsr_stream.cpuinfo import usable_cores
from vsr_stream.errors import SinkError, SourceError, StageFailedError
from vsr_stream.media.synth import write_clip
from vsr_stream.models import build_model, save_weights
from vsr_stream.models.inference import BranchModel
from vsr_stream.runtime.fused import choose_array_module, run_fused

LOSSLESS = {"encode": {"lossless": True}, "classify": {"tvat_thresholds": [20_000.0]}}  # flat and busy tiles


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fused_clips")
    return {"even": write_clip(d / "even.mp4", width=64, height=48, frames=6),  # H.264 + AAC
            "odd": write_clip(d / "odd.mkv", width=45, height=37, frames=5, pix_fmt="yuv444p"),
            "deep": write_clip(d / "deep.mkv", width=40, height=30, frames=3, bit_depth=10, pix_fmt="yuv444p10le")}


@pytest.fixture(scope="module")
def fsrcnn_weights(tmp_path_factory):
    """Seeded random FSRCNN-PS-16 weights whose output spans the range (both modes load the same ones)."""
    def make(scale: int) -> str:
        torch.manual_seed(scale)
        net = build_model("fsrcnn-ps-16", scale, allow_random=True)
        with torch.no_grad():
            [p for p in net.parameters() if p.dim() == 4][-1].mul_(30.0)
        path = tmp_path_factory.mktemp("weights") / f"fsrcnn-ps-16_x{scale}.safetensors"
        save_weights(net, path)
        return str(path)
    return make


def two_classes(weights: str) -> dict:
    return {**LOSSLESS, "tiling": {"tile_px": 16, "overlap_px": 4, "context_px": 8},
            "upscale": {"allow_random_weights": True, "branches": [
        {"model": "nearest"}, {"model": "fsrcnn-ps-16", "weights": weights, "max_batch": 2}]}}


def decoded(path: Path, fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(video=0)]


def report_fields(r: vsr_stream.Report) -> dict:
    return {k: getattr(r, k) for k in ("scale", "frames", "tiles_per_class", "passthrough_packets",
                                       "dropped_packets", "resized_frames", "fp32_retries")}


@pytest.mark.parametrize("clip,scale,fmt", [("even", 2, "rgb24"), ("odd", 3, "rgb24"), ("deep", 2, "rgb48le")])
def test_fused_is_bit_identical_to_threads(clips, fsrcnn_weights, tmp_path, clip, scale, fmt):
    overrides = two_classes(fsrcnn_weights(scale))
    src = clips[clip]
    ref = vsr_stream.upscale(src, tmp_path / "threads.mkv", scale=scale, overrides=overrides)
    got = vsr_stream.upscale(src, tmp_path / "fused.mkv", scale=scale,
                             overrides={**overrides, "transport": {"mode": "fused"}})
    a, b = decoded(tmp_path / "threads.mkv", fmt), decoded(tmp_path / "fused.mkv", fmt)
    assert len(a) == len(b) == got.frames
    assert a[0].std() > 5, "a flat picture would prove nothing"
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa, fb)
    assert report_fields(got) == report_fields(ref)
    assert got.transport == "fused" and all(n > 0 for n in got.tiles_per_class)
    assert got.stages["upscale1"]["batches"] > got.frames  # max_batch 2 splits each frame's busy tiles
    assert got.stages["encode"]["frames_written"] == ref.stages["encode"]["frames_written"] == len(a)


def test_audio_packets_and_progress_match_threads(clips, tmp_path):
    overrides = {**LOSSLESS, "upscale": {"branches": [{"model": "nearest"}, {"model": "bicubic"}]}}
    src = clips["even"]
    calls = []
    ref = vsr_stream.upscale(src, tmp_path / "threads.mkv", scale=2, overrides=overrides)
    got = vsr_stream.upscale(src, tmp_path / "fused.mkv", scale=2, progress=lambda n, total: calls.append((n, total)),
                             overrides={**overrides, "transport": {"mode": "fused"}})
    assert packets(tmp_path / "fused.mkv", "audio") == packets(tmp_path / "threads.mkv", "audio")
    assert len(packets(src, "audio")) == got.passthrough_packets == ref.passthrough_packets > 0
    assert calls == [(n, 6) for n in range(1, 7)]
    assert report_fields(got) == report_fields(ref)


def test_png_folder_counts_dropped_audio_like_threads(clips, tmp_path):
    overrides = {"upscale": {"branches": [{"model": "nearest"}]}}
    ref = vsr_stream.upscale(clips["even"], str(tmp_path / "threads") + "/", scale=2, overrides=overrides)
    got = vsr_stream.upscale(clips["even"], str(tmp_path / "fused") + "/", scale=2,
                             overrides={**overrides, "transport": {"mode": "fused"}})
    assert got.dropped_packets == ref.dropped_packets > 0
    names = sorted(p.name for p in (tmp_path / "fused").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "threads").iterdir()) and len(names) == 6
    for name in names:
        assert (tmp_path / "fused" / name).read_bytes() == (tmp_path / "threads" / name).read_bytes()


FUSED = {"transport": {"mode": "fused"}}


def test_missing_input_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        vsr_stream.upscale(tmp_path / "missing.mkv", tmp_path / "o.mkv", scale=2, overrides=FUSED)
    assert list(tmp_path.iterdir()) == []


def test_input_broken_midway_is_a_source_error_and_leaves_nothing(tmp_path):
    src = write_clip(tmp_path / "t.mkv", frames=24)
    src.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SourceError, match="t.mkv"):
        vsr_stream.upscale(src, out / "o.mkv", scale=2, overrides=FUSED)
    assert list(out.iterdir()) == []


def test_output_errors_are_sink_errors_and_leave_nothing(clips, tmp_path):
    with pytest.raises(SinkError):
        vsr_stream.upscale(clips["even"], tmp_path / "no" / "dir.mkv", scale=2, overrides=FUSED)
    with pytest.raises(SinkError, match="more than one frame"):  # found by the sink on the second frame
        vsr_stream.upscale(clips["even"], tmp_path / "one.png", scale=2, overrides=FUSED)
    assert list(tmp_path.iterdir()) == []


def test_failing_model_names_its_step_and_leaves_nothing(clips, tmp_path):
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
    overrides = {**FUSED, "upscale": {"branches": [{"model": "test-exploding"}]}}
    with pytest.raises(StageFailedError, match="upscale0: boom in forward"):
        vsr_stream.upscale(clips["even"], tmp_path / "o.mkv", scale=2, overrides=overrides)
    assert list(tmp_path.iterdir()) == []


def test_a_stitch_failure_in_the_encode_thread_names_the_stitch_and_leaves_nothing(clips, tmp_path, monkeypatch):
    """Under NumPy the stitch runs in the encode thread: its failure still names the stitch, with
    the original error's type, and the output is removed."""
    from vsr_stream.errors import ModelInputError
    from vsr_stream.runtime import fused

    def broken(*args, **kwargs):
        raise ModelInputError("a core outside the frame")

    monkeypatch.setattr(fused, "stitch_cores", broken)
    cfg = load_config({**FUSED, "scale": 2, "tiling": {"tile_px": 16, "overlap_px": 4, "context_px": 2},
                       "upscale": {"allow_random_weights": True, "branches": [{"model": "bicubic", "merge_px": 0}]}})
    with pytest.raises(StageFailedError, match="stitch: a core outside the frame") as failed:
        run_fused(cfg, str(clips["even"]), str(tmp_path / "o.mkv"))
    assert failed.value.error_type == "ModelInputError"
    assert list(tmp_path.iterdir()) == []


class _ThreadRecorder(torch.nn.Module):
    """Bicubic that records the thread it runs in and that thread's torch thread count."""

    seen: set = set()

    def __init__(self, scale: int) -> None:
        super().__init__()
        from vsr_stream.models.interp import Bicubic
        self.bicubic = Bicubic(scale)

    def forward(self, x):
        import threading
        _ThreadRecorder.seen.add((threading.current_thread().name.split("_")[0], torch.get_num_threads()))
        return self.bicubic(x)


@pytest.mark.parametrize("networks, threads, expected", [(1, 0, {"MainThread"}), (2, 0, {"vsr-network"}),
                                                         (3, 2, {"vsr-network"})])
def test_cpu_networks_run_in_the_pool_and_give_the_same_frames(clips, fsrcnn_weights, tmp_path, networks, threads,
                                                               expected):
    """transport.fused_networks: the networks run in that many threads (1: the loop's own), each
    with its share of the cores or the branches' threads; the frames do not depend on it."""
    from vsr_stream.models import ModelDescriptor, register
    from vsr_stream.models.registry import get

    try:
        get("test-thread-recorder")
    except LookupError:
        register(ModelDescriptor(name="test-thread-recorder", scales=(2,), builder=_ThreadRecorder, learned=False,
                                 supports_half=False, receptive_radius_px=2, min_size_px=1,
                                 description="records its threads (tests)", family="test"))
    _ThreadRecorder.seen = set()
    cfg = two_classes(fsrcnn_weights(2))
    cfg["upscale"]["branches"][0] = {"model": "test-thread-recorder", "threads": threads, "freeze": False}
    # every frame after the first: some tiles reused, the others (due a refresh) from several windows
    cfg["reuse"] = {"mad_threshold": 255.0, "min_fraction": 0.0, "max_age_frames": 2}
    one = vsr_stream.upscale(clips["even"], tmp_path / "one.mkv", scale=2,
                             overrides={**cfg, "transport": {"mode": "fused", "fused_networks": 1}})
    _ThreadRecorder.seen = set()
    before = torch.get_num_threads()
    report = vsr_stream.upscale(clips["even"], tmp_path / "n.mkv", scale=2,
                                overrides={**cfg, "transport": {"mode": "fused", "fused_networks": networks}})
    names = {name for name, _ in _ThreadRecorder.seen}
    assert names == expected
    if networks > 1:  # the cores shared among the pool's threads, or the branches' own count
        share = threads or max(1, usable_cores() // networks)
        assert {n for _, n in _ThreadRecorder.seen} == {share}
    frames, frames_one = decoded(tmp_path / "n.mkv"), decoded(tmp_path / "one.mkv")
    assert len(frames) == len(frames_one) == 6
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames_one))
    assert report.tiles_per_class == one.tiles_per_class and min(report.tiles_per_class) > 0
    assert report.stages["classify"]["tiles_reused"] > 0  # stitched onto the previous output as well
    assert report.stages["upscale0"]["busy_s"] > 0 and report.stages["upscale1"]["busy_s"] > 0
    assert report.stages["upscale0"]["calls_at_once"] == networks
    assert torch.get_num_threads() == before  # the pool's setting does not outlive the run


def test_interrupt_aborts_the_output(clips, tmp_path):
    def interrupt(done: int, total: int | None) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vsr_stream.upscale(clips["even"], tmp_path / "o.mkv", scale=2, overrides=FUSED, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_numpy_when_cuda_is_asked_for_but_not_on_one_usable_device(caplog):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    with caplog.at_level(logging.WARNING, logger="vsr_stream.runtime.fused"):
        assert choose_array_module([BranchConfig(device="cuda:0")], [cpu]) is np  # torch fell back to the CPU
        assert choose_array_module([BranchConfig(device="cuda:0"), BranchConfig()], [cuda, cpu]) is np
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "NumPy" in caplog.records[0].message and "cpu" in caplog.records[0].message
    caplog.clear()
    assert choose_array_module([BranchConfig()], [cpu]) is np
    assert caplog.records == []  # a CPU run asked for nothing else: nothing to explain


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_entry_point_is_the_numpy_one(dtype):
    torch.manual_seed(0)
    model = BranchModel(BranchConfig(model="fsrcnn-ps-16"), 2, allow_random=True)
    windows = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (3, 9, 11, 3), dtype=dtype)
    hr = model.upscale_tensor(torch.from_numpy(windows))
    assert hr.dtype == torch.from_numpy(windows).dtype and tuple(hr.shape) == (3, 18, 22, 3)
    np.testing.assert_array_equal(hr.numpy(), model.upscale(windows))


class Transfers:
    """Counts pixel data (arrays of 3 or more dimensions: frames, window stacks) crossing between
    host and the emulated device. Geometry, index and class arrays (1-2-D, bytes per tile) are not pixels."""

    def __init__(self, fake, monkeypatch: pytest.MonkeyPatch) -> None:
        self.uploads: list[tuple[int, ...]] = []
        self.downloads: list[tuple[int, ...]] = []
        for name in ("asarray", "array", "ascontiguousarray"):
            monkeypatch.setattr(fake, name, self._upload(getattr(fake, name)), raising=False)
        host_copy = fake.asnumpy
        monkeypatch.setattr(fake, "asnumpy", lambda a: self._download(a, host_copy))
        monkeypatch.setattr(emulated_cupy.DeviceArray, "get", lambda a: self._download(a, np.array))
        # CuPy's as_strided returns a CuPy array; NumPy's keeps the subclass only when asked
        as_strided = np.lib.stride_tricks.as_strided
        strided = lambda x, shape=None, strides=None: as_strided(x, shape, strides, subok=True)  # noqa: E731
        monkeypatch.setattr(fake, "lib", SimpleNamespace(stride_tricks=SimpleNamespace(as_strided=strided)),
                            raising=False)

    def _upload(self, fn):
        def call(a, *args, **kwargs):
            if not isinstance(a, emulated_cupy.DeviceArray) and np.ndim(a) >= 3:
                self.uploads.append(np.shape(a))
            return fn(a, *args, **kwargs)
        return call

    def _download(self, a, copy):
        if isinstance(a, emulated_cupy.DeviceArray) and a.ndim >= 3:
            self.downloads.append(a.shape)
        return copy(a)


@pytest.mark.parametrize("tile_px", [12, 32])
def test_frame_is_uploaded_once_and_downloaded_once(emulated, monkeypatch, clips, tmp_path, tile_px):  # noqa: F811
    """The CuPy path through the emulated device (kernels in the g++ harness, torch via DLPack):
    one upload and one download per frame, however many tiles, and the NumPy path's frames."""
    transfers = Transfers(emulated, monkeypatch)
    cfg = load_config({**LOSSLESS, "scale": 2, "tiling": {"tile_px": tile_px, "overlap_px": 4, "context_px": 2},
                       "upscale": {"branches": [{"model": "nearest"}, {"model": "bicubic", "max_batch": 3}]}})
    src = clips["odd"]
    stats = run_fused(cfg, str(src), str(tmp_path / "device.mkv"), xp=emulated)
    frames = stats["encode"]["frames_written"]
    assert frames == 5 and sum(stats["classify"]["tiles_per_class"]) + stats["classify"]["tiles_reused"] >= 4 * frames
    assert transfers.uploads == [(37, 45, 3)] * frames
    assert transfers.downloads == [(74, 90, 3)] * frames
    launched = set(emulated.harness.launches)
    assert {"vsp_u8", "tile_vsp_sums", "accumulate_u8", "normalize_u8"} <= launched, launched
    run_fused(cfg, str(src), str(tmp_path / "host.mkv"))
    for a, b in zip(decoded(tmp_path / "device.mkv"), decoded(tmp_path / "host.mkv"), strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1  # float atomics: equal up to float32 rounding


@pytest.mark.gpu
def test_cuda_fused_matches_cpu_fused(clips, tmp_path, caplog):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1 or not torch.cuda.is_available():
            pytest.skip("no CUDA device usable by both CuPy and torch")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"no usable CUDA device ({e})")
    branches = [{"model": "nearest"}, {"model": "nearest"}]
    cpu = {**LOSSLESS, **FUSED, "upscale": {"branches": branches}}
    gpu = {**cpu, "upscale": {"branches": [{**b, "device": "cuda:0"} for b in branches]}}
    with caplog.at_level(logging.INFO, logger="vsr_stream.runtime.fused"):
        got = vsr_stream.upscale(clips["odd"], tmp_path / "gpu.mkv", scale=3, overrides=gpu)
    assert any("CuPy" in r.message for r in caplog.records)
    ref = vsr_stream.upscale(clips["odd"], tmp_path / "cpu.mkv", scale=3, overrides=cpu)
    assert report_fields(got) == report_fields(ref)
    for a, b in zip(decoded(tmp_path / "gpu.mkv"), decoded(tmp_path / "cpu.mkv"), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["fused", "inproc"])
@pytest.mark.parametrize("n_classes", [2, 1])
def test_merged_windows_give_the_tile_by_tile_output(clips, fsrcnn_weights, tmp_path, mode, n_classes):
    """merge_px: touching tiles of a class run as one window, in fewer calls, with the same output
    (to float rounding: a conv may sum in another order on another window size). With one class
    the merged window is the whole frame, which the fused loop outputs as it is."""
    overrides = {**two_classes(fsrcnn_weights(2)), "transport": {"mode": mode}}
    if n_classes == 1:
        overrides = {**overrides, "classify": {"tvat_thresholds": []}, "reuse": {"enabled": False},
                     "upscale": {**overrides["upscale"], "branches": overrides["upscale"]["branches"][1:]}}
    alone = vsr_stream.upscale(clips["even"], tmp_path / "alone.mkv", scale=2, overrides=overrides)
    merged_branches = [{**b, "merge_px": 64} for b in overrides["upscale"]["branches"]]
    merged = vsr_stream.upscale(clips["even"], tmp_path / "merged.mkv", scale=2, overrides={
        **overrides, "upscale": {**overrides["upscale"], "branches": merged_branches}})
    a, b = decoded(tmp_path / "alone.mkv"), decoded(tmp_path / "merged.mkv")
    assert len(a) == len(b) == merged.frames == 6
    diff = np.abs(np.stack(a).astype(int) - np.stack(b).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert merged.tiles_per_class == alone.tiles_per_class
    work = [sum(s["window_px"] for name, s in r.stages.items() if name.startswith("upscale")) for r in (merged, alone)]
    assert work[0] < 0.8 * work[1]  # the context around small tiles is paid once per merged window
    if n_classes == 1 and mode == "fused":
        assert work[0] == 6 * 64 * 48  # one window per frame: the frame
