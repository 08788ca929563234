"""`vsr-stream bench`: the pipeline (one or more presets) against the naive loop, on one clip, in one run.

Per preset: fps of the pipeline and of the naive loop with its hardest branch (median of
``repeats``, interleaved), their ratio and Y-PSNR against the clip's HR frames, time per stage
and the ideal fps it implies, the branch stage's multiply-adds per second against a matmul
peak measured here with the same threads, and peak memory (optionally on a 10x longer clip).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from vsr_stream.api import resolve_config
from vsr_stream.bench import analyse as an
from vsr_stream.bench.clips import Clip, given_clip, make_clip, parse_size
from vsr_stream.bench.measure import in_child, matmul_peak_gmacs, naive_run, pipeline_run
from vsr_stream.config import BranchConfig, PipelineConfig
from vsr_stream.errors import ConfigError
from vsr_stream.models.inference import native_bf16

log = logging.getLogger(__name__)

BENCH_ENCODE = {"codec": "libx264", "preset": "veryfast", "crf": 18, "overwrite": True}
MEMORY_SCALING_FACTOR = 10


def run_bench(input: str | None = None, *, scale: int = 4, presets: list[str] | None = None,
              model: str | None = None, clip: str = "camera", images: str | None = None, frames: int = 24,
              size: str = "320x180", repeats: int = 3, memory_scaling: bool = False,
              plot: str | None = None) -> dict[str, Any]:
    """Benchmark ``presets`` (config names or files; default: the default preset) on ``input``
    or a generated ``clip`` ('camera' or 'static', ``frames`` of ``size`` = LR WIDTHxHEIGHT,
    pictures from the folder ``images``); returns the results as a JSON-ready dict (see the
    README's Benchmark section). ``plot`` writes a PNG of fps against PSNR.

    ``model`` replaces the naive loop's network (default: each preset's hardest branch).
    Raises ConfigError for bad arguments or configs (before anything runs), SourceError,
    SinkError or StageFailedError when a run fails.
    """
    names = list(dict.fromkeys(presets or ["default"]))
    lr_w, lr_h = _check_arguments(input, frames, size, repeats, memory_scaling, plot)
    cfgs = {name: resolve_config(name, scale, {"encode": BENCH_ENCODE}) for name in names}
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        folder = Path(tmp)
        the_clip = given_clip(input) if input else make_clip(clip, folder, lr_hw=(lr_h, lr_w), frames=frames,
                                                              scale=scale, images=images)
        naive = _naive_branches(cfgs, model)
        pipe_runs, naive_runs = _measure(cfgs, naive, the_clip, folder, repeats)
        long_runs = _long_runs(cfgs, the_clip, folder, scale, images) if memory_scaling else {}
        naive_results = {key: _naive_result(key, runs, the_clip, folder / f"naive-{i}.mkv", scale)
                         for i, (key, runs) in enumerate(naive_runs.items())}
        peaks: dict[int, dict[str, float]] = {}
        results = [_preset_result(name, cfgs[name], pipe_runs[name], naive_results[naive[name][0]],
                                  _psnr(the_clip, folder / f"pipeline-{i}.mkv", scale),
                                  _peak(peaks, naive[name][1]), the_clip, long_runs.get(name))
                   for i, name in enumerate(names)]
    out = {"clip": the_clip.describe(scale, images), "repeats": repeats, "presets": results}
    if plot:
        from vsr_stream.bench.plot import plot_fps_psnr

        plot_fps_psnr(out, plot)
    return out


def _check_arguments(input: str | None, frames: int, size: str, repeats: int, memory_scaling: bool,
                     plot: str | None) -> tuple[int, int]:
    if frames < 1 or repeats < 1:
        raise ConfigError(f"--frames and --repeats must be at least 1, got {frames} and {repeats}")
    if input and (memory_scaling or plot):
        raise ConfigError("--memory-scaling and --plot need a generated clip (with HR frames), not an INPUT")
    if plot:
        from vsr_stream.bench.plot import check_plotting

        check_plotting()
    return parse_size(size)


def naive_branch(cfg: PipelineConfig, model: str | None) -> BranchConfig:
    """The naive loop's branch: the hardest class's, with ``model`` (and its default weights) if given."""
    hard = cfg.upscale.branches[-1]
    return hard.model_copy(update={"model": model, "weights": None}) if model else hard


def _naive_branches(cfgs: dict[str, PipelineConfig], model: str | None) -> dict[str, tuple[str, int]]:
    """Per preset: (key of its naive loop, thread count); presets with the same hard branch share one."""
    out = {}
    for name, cfg in cfgs.items():
        branch = naive_branch(cfg, model)
        out[name] = (branch.model_dump_json(), branch.threads or torch.get_num_threads())
    return out


def _measure(cfgs: dict[str, PipelineConfig], naive: dict[str, tuple[str, int]], clip: Clip, folder: Path,
             repeats: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """``repeats`` rounds of every preset's pipeline and every distinct naive loop, each run
    in its own process; outputs ``pipeline-<i>.mkv`` and ``naive-<j>.mkv`` in ``folder``."""
    naive_cfgs: dict[str, PipelineConfig] = {}
    for name, (key, _) in naive.items():
        naive_cfgs.setdefault(key, cfgs[name])
    pipe_runs: dict[str, list[dict]] = {name: [] for name in cfgs}
    naive_runs: dict[str, list[dict]] = {key: [] for key in naive_cfgs}
    for r in range(repeats):
        for i, (name, cfg) in enumerate(cfgs.items()):
            log.info("round %d: pipeline %s", r + 1, name)
            pipe_runs[name].append(in_child(f"pipeline {name}", pipeline_run, cfg, str(clip.path),
                                            str(folder / f"pipeline-{i}.mkv")))
        for j, (key, cfg) in enumerate(naive_cfgs.items()):
            log.info("round %d: naive loop %d", r + 1, j)
            branch = BranchConfig.model_validate_json(key)
            naive_runs[key].append(in_child("naive loop", naive_run, cfg, branch, str(clip.path),
                                            str(folder / f"naive-{j}.mkv")))
    return pipe_runs, naive_runs


def _long_runs(cfgs: dict[str, PipelineConfig], clip: Clip, folder: Path, scale: int,
               images: str | None) -> dict[str, dict]:
    """One pipeline run per preset on a clip MEMORY_SCALING_FACTOR times longer (same kind and size)."""
    long_dir = folder / "long"
    long_dir.mkdir()
    long_clip = make_clip(clip.kind, long_dir, lr_hw=clip.lr_hw, frames=clip.frames * MEMORY_SCALING_FACTOR,
                          scale=scale, images=images, keep_hr=False)
    return {name: in_child(f"pipeline {name} (long clip)", pipeline_run, cfg, str(long_clip.path),
                           str(long_dir / f"pipeline-{i}.mkv"), clip.frames)
            for i, (name, cfg) in enumerate(cfgs.items())}


def _peak(cache: dict[int, dict[str, float]], threads: int) -> dict[str, Any]:
    """The matmul peaks with ``threads``, and whether this CPU computes bf16 natively: without
    AVX512-BF16 or AMX torch emulates it (about 1% of the fp32 rate), and the branches' share of
    the bf16 peak says nothing."""
    if threads not in cache:
        cache[threads] = matmul_peak_gmacs(threads)
    return {"threads": threads, **cache[threads], "bf16_native": native_bf16(torch.device("cpu"))[0]}


def _psnr(clip: Clip, output: Path, scale: int) -> float | None:
    return an.video_psnr_y(output, clip.hr_path, scale) if clip.hr_path is not None else None


def _naive_result(key: str, runs: list[dict], clip: Clip, output: Path, scale: int) -> dict[str, Any]:
    seconds = [r["elapsed_s"] for r in runs]
    return {"naive_model": BranchConfig.model_validate_json(key).model,
            "naive_fps": an.fps(runs[0]["frames"], seconds), "naive_s": seconds,
            "naive_precision": runs[0]["numerics"]["precision"], "naive_layout": runs[0]["numerics"]["layout"],
            "naive_psnr_y_db": _psnr(clip, output, scale),
            "naive_peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def _preset_result(name: str, cfg: PipelineConfig, runs: list[dict], naive: dict[str, Any], psnr: float | None,
                   peak: dict[str, Any], clip: Clip, long_run: dict | None) -> dict[str, Any]:
    seconds = [r["report"]["elapsed_s"] for r in runs]
    mid = an.median_run(runs, seconds)
    report = mid["report"]
    pipeline_fps = an.fps(report["frames"], seconds)
    ms, alone = an.stage_times(mid)
    ideal = an.ideal_fps(ms)
    rows = _branch_rows(cfg, clip, report["stages"], mid["numerics"])
    rate = an.branch_rate_gmacs(rows)
    naive_psnr = naive["naive_psnr_y_db"]
    return {"config": name, "transport": cfg.transport.mode, "frames": report["frames"],
            "pipeline_fps": pipeline_fps, "pipeline_s": seconds, "pipeline_psnr_y_db": psnr,
            **naive,
            "ratio": pipeline_fps / naive["naive_fps"],
            "psnr_delta_db": psnr - naive_psnr if psnr is not None and naive_psnr is not None else None,
            "precision": [n["precision"] for n in mid["numerics"]], "layout": [n["layout"] for n in mid["numerics"]],
            "tiles_per_class": report["tiles_per_class"],
            "tiles_reused": report.get("tiles_reused", report["stages"].get("classify", {}).get("tiles_reused")),
            "stage_ms_per_frame": ms, "stages_measured_alone": alone, "ideal_fps": ideal,
            "efficiency": pipeline_fps / ideal if ideal else None,
            "window_hw": list(an.window_hw(clip.lr_hw, cfg.tiling)), "branches": rows,
            "branch_gmacs_per_s": rate, "matmul_peak_gmacs_per_s": peak,
            "branch_fraction_of_peak": {p: rate / peak[p] for p in ("fp32", "bf16")} if rate else None,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "peak_rss_children_mib": max(r["peak_rss_children_mib"] for r in runs),
            "memory_scaling": _memory_scaling(runs, long_run)}


def _branch_rows(cfg: PipelineConfig, clip: Clip, stages: dict[str, dict], numerics: list[dict]) -> list[dict]:
    hw = an.window_hw(clip.lr_hw, cfg.tiling)
    rows = an.branch_work(an.window_macs(cfg, hw), an.branch_tiles(stages, cfg.n_classes), an.stage_busy_s(stages),
                          an.branch_tiles(stages, cfg.n_classes, "window_px"), hw[0] * hw[1])
    return [{"model": b.model, **n, **row} for b, n, row in zip(cfg.upscale.branches, numerics, rows)]


def _memory_scaling(runs: list[dict], long_run: dict | None) -> dict[str, Any] | None:
    if long_run is None:
        return None
    short = max(r["peak_rss_mib"] for r in runs)
    curve = long_run.get("peak_rss_by_frames") or []
    out = {"frames": long_run["report"]["frames"], "peak_rss_mib": long_run["peak_rss_mib"],
           "short_peak_rss_mib": short, "growth": long_run["peak_rss_mib"] / short,
           "peak_rss_by_frames": curve}
    if curve:  # the same run's peak after its first tenth against its end: no run-to-run spread
        out["growth_in_run"] = long_run["peak_rss_mib"] / curve[0][1]
        out["growth_second_half"] = long_run["peak_rss_mib"] / curve[len(curve) // 2 - 1][1] if len(curve) > 1 else 1.0
    return out
