"""`vsr-stream bench`: the generated clips, the numbers it reports and the plot (no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.system.conftest import run_cli
from vsr_stream.bench import analyse
from vsr_stream.bench.clips import make_clip, parse_size
from vsr_stream.bench.measure import in_child
from vsr_stream.bench.plot import check_plotting
from vsr_stream.config import DecodeConfig
from vsr_stream.errors import ConfigError, StageFailedError
from vsr_stream.models.inference import native_bf16
from vsr_stream.media.source import open_source

_BICUBIC = """
[tiling]
tile_px = 16
overlap_px = 2
context_px = 2
[[upscale.branches]]
model = "bicubic"
max_batch = 8
"""


def _decoded(path) -> list[np.ndarray]:
    with open_source(str(path), DecodeConfig()) as source:
        return [item.array for item in source.items()]


@pytest.mark.parametrize("kind", ["camera", "static"])
def test_clip_has_requested_frames_and_size_moves_and_repeats(tmp_path, kind):
    clip = make_clip(kind, tmp_path, lr_hw=(32, 48), frames=5, scale=4)
    lr, hr = _decoded(clip.path), np.load(clip.hr_path)
    assert clip.frames == len(lr) == 5
    assert {f.shape for f in lr} == {(32, 48, 3)} and hr.shape == (5, 128, 192, 3)
    for frames in (hr, lr):
        for a, b in zip(frames[:-1], frames[1:]):
            assert np.abs(a.astype(int) - b).mean() > 0.1  # every frame differs from the one before
    (tmp_path / "again").mkdir()
    again = make_clip(kind, tmp_path / "again", lr_hw=(32, 48), frames=5, scale=4)
    assert np.array_equal(np.load(again.hr_path), hr) and again.path.read_bytes() == clip.path.read_bytes()


def test_bench_reports_every_number_and_plots(tmp_path):
    (tmp_path / "tiled.toml").write_text(_BICUBIC + '[transport]\nmode = "inproc"\n')
    (tmp_path / "fused.toml").write_text(_BICUBIC + '[transport]\nmode = "fused"\n')
    png = tmp_path / "plot.png"
    res = run_cli("bench", "--presets", f"{tmp_path / 'tiled.toml'},{tmp_path / 'fused.toml'}", "--size", "48x32",
                  "--frames", "4", "--repeats", "1", "--memory-scaling", "--plot", str(png), "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["clip"]["kind"] == "camera" and result["clip"]["lr_size"] == "48x32" and result["clip"]["frames"] == 4
    assert [r["transport"] for r in result["presets"]] == ["inproc", "fused"]
    for r in result["presets"]:
        assert r["frames"] == 4 and r["pipeline_fps"] > 0 and r["naive_fps"] > 0 and r["naive_model"] == "bicubic"
        assert math.isclose(r["ratio"], r["pipeline_fps"] / r["naive_fps"])
        assert 15 < r["pipeline_psnr_y_db"] < 100 and 15 < r["naive_psnr_y_db"] < 100
        assert abs(r["psnr_delta_db"]) < 0.5  # bicubic tiles with context match the whole-frame bicubic
        assert r["precision"] == ["fp32"] and r["naive_precision"] == "fp32"
        # 48x32 in 16 px tiles with 2 px overlap: 4 x 3 per frame, each upscaled or reused
        assert sum(r["tiles_per_class"]) + r["tiles_reused"] == 4 * 12
        assert set(r["stage_ms_per_frame"]) >= {"decode", "classify", "upscale0", "stitch", "encode"}
        assert all(v > 0 for v in r["stage_ms_per_frame"].values())
        assert math.isclose(r["ideal_fps"], 1000 / sum(r["stage_ms_per_frame"].values()))
        assert r["efficiency"] > 0 and math.isclose(r["efficiency"], r["pipeline_fps"] / r["ideal_fps"])
        branch = r["branches"][0]
        upscaled = sum(r["tiles_per_class"])
        assert branch["tiles"] == upscaled and branch["macs_per_window"] == 16 * 18 * 16 * 3 * 16  # 16 taps per HR value
        assert branch["window_px"] == upscaled * 16 * 18 and branch["macs"] == upscaled * branch["macs_per_window"]
        assert r["branch_gmacs_per_s"] > 0 and r["matmul_peak_gmacs_per_s"]["fp32"] > 0
        assert r["matmul_peak_gmacs_per_s"]["bf16_native"] == native_bf16(torch.device("cpu"))[0]
        assert r["branch_fraction_of_peak"]["fp32"] > 0
        assert r["peak_rss_mib"] > 50 and r["memory_scaling"]["frames"] == 40
        assert r["memory_scaling"]["peak_rss_mib"] > 50
        curve = r["memory_scaling"]["peak_rss_by_frames"]  # the long run's peak every 4 frames
        assert [f for f, _ in curve] == list(range(4, 44, 4)) and all(a[1] <= b[1] for a, b in zip(curve, curve[1:]))
        assert r["memory_scaling"]["growth_in_run"] >= 1 and r["memory_scaling"]["growth_second_half"] >= 1
    assert result["presets"][1]["stages_measured_alone"] == []  # the fused loop times its own decode
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_bad_size_is_a_clean_usage_error():
    res = run_cli("bench", "--size", "47x32", "--frames", "2", "--repeats", "1")
    assert res.returncode == 2
    assert res.stderr.startswith("error: --size") and "Traceback" not in res.stderr


_WRITE_CLIP = """
import sys
from pathlib import Path
from vsr_stream.bench.clips import make_clip
make_clip("camera", Path(sys.argv[1]), lr_hw=(48, 64), frames=8, scale=2, keep_hr=False)
"""


def test_clip_bytes_are_the_same_in_another_process(tmp_path):
    """The bench compares runs made in separate processes: their LR clip must be the same file.
    (On an AVX-512 CPU x264's AVX-512 code made each process's encode differ, one thread or not.)"""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        subprocess.run([sys.executable, "-c", _WRITE_CLIP, str(tmp_path / name)], check=True, timeout=120)
    assert (tmp_path / "a" / "camera.mp4").read_bytes() == (tmp_path / "b" / "camera.mp4").read_bytes()


@pytest.mark.parametrize("size", ["48", "0x0", "48x32x2", "8x8", "axb"])
def test_parse_size_refuses_what_cannot_be_encoded(size):
    with pytest.raises(ConfigError, match="--size"):
        parse_size(size)
    assert parse_size("48X32") == (48, 32)


def _fails_in_child() -> None:
    raise StageFailedError("upscale0.0", "out of memory")  # takes two arguments: does not unpickle


def test_error_in_a_measuring_process_comes_back_typed():
    with pytest.raises(StageFailedError, match="pipeline x: StageFailedError: upscale0.0: out of memory"):
        in_child("pipeline x", _fails_in_child)


def test_plot_without_matplotlib_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ConfigError, match="matplotlib"):
        check_plotting()


def test_stage_times_sum_branch_workers_and_skip_untimed_stages():
    stages = {"decode": {"frames": 2}, "classify": {"busy_s": 0.5},
              "upscale0.0": {"cls": 0, "tiles": 3, "busy_s": 1.0}, "upscale0.1": {"cls": 0, "tiles": 5, "busy_s": 2.0},
              "upscale1": {"cls": 1, "tiles": 4, "busy_s": 0.0}}
    busy = analyse.stage_busy_s(stages)
    assert busy == {"classify": 0.5, "upscale0": 3.0, "upscale1": 0.0}
    rows = analyse.branch_work([10**9, 2 * 10**9], analyse.branch_tiles(stages, 2), busy)
    assert [r["tiles"] for r in rows] == [8, 4]
    assert rows[0]["gmacs_per_s"] == pytest.approx(8 / 3) and rows[1]["gmacs_per_s"] is None
    assert analyse.branch_rate_gmacs(rows) == pytest.approx((8 + 8) / 3)
    # merged windows: the work is the pixels run, not tiles x window (here half of 8 windows of 100 px)
    stages["upscale0.0"]["window_px"], stages["upscale0.1"]["window_px"] = 150, 250
    rows = analyse.branch_work([10**9, 2 * 10**9], analyse.branch_tiles(stages, 2), busy,
                               analyse.branch_tiles(stages, 2, "window_px"), 100)
    assert rows[0]["macs"] == 4 * 10**9 and rows[0]["gmacs_per_s"] == pytest.approx(4 / 3)
    assert analyse.ideal_fps({"a": 50.0, "b": 150.0}) == pytest.approx(5.0)
    # the fused loop's network threads: their summed time over the calls that ran side by side
    fused = {"upscale0": {"cls": 0, "tiles": 8, "busy_s": 3.0, "calls_at_once": 2}, "stitch": {"busy_s": 1.0}}
    assert analyse.stage_busy_s(fused) == {"upscale0": 1.5, "stitch": 1.0}


def test_camera_clip_from_a_folder_shows_its_pictures_at_their_own_resolution(tmp_path):
    """--images: the HR frames are the pictures' own pixels (a mosaic), not an enlargement of one."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)]
    for k, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"{k}.png")
    clip = make_clip("camera", tmp_path, lr_hw=(32, 48), frames=2, scale=4, images=str(folder))
    first = np.load(clip.hr_path)[0]  # frame 0: the canvas's corner, unzoomed
    assert first.shape == (128, 192, 3)
    assert np.array_equal(first[:40, :60], pictures[0]) and np.array_equal(first[:40, 60:120], pictures[1])
