"""`vsr-stream bench`: the pipeline against the naive loop on the same clip, in one process.

Naive loop: decode → the whole frame through one model → encode, one frame at a time, with
the same encoder settings as the pipeline. Each is run ``repeats`` times; medians are reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vsr_stream.api import resolve_config, upscale
from vsr_stream.config import PipelineConfig, deep_merge
from vsr_stream.errors import ConfigError
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.media.sink import open_sink
from vsr_stream.media.source import open_source
from vsr_stream.media.synth import write_clip
from vsr_stream.models.inference import BranchModel

BENCH_ENCODE = {"codec": "libx264", "preset": "veryfast", "crf": 18, "overwrite": True}


def naive_loop(src: str, dst: str, cfg: PipelineConfig, model: str) -> float:
    """Upscale ``src`` frame by frame with ``model`` on whole frames; returns seconds taken."""
    branch = cfg.upscale.branches[-1].model_copy(update={"model": model})
    net = BranchModel(branch, cfg.scale, cfg.upscale.allow_random_weights)
    t0 = time.perf_counter()
    with open_source(src, cfg.decode) as source:
        sink = open_sink(dst, cfg.encode, source.info, cfg.scale)
        try:
            for item in source.items():
                if isinstance(item, VideoFrameItem):
                    hr = net.upscale(item.array[None])[0]
                    sink.write_frame(VideoFrameItem(item.index, item.pts, item.time_base, item.duration, hr, item.name))
                else:
                    sink.write_packet(item)
            sink.close()
        except BaseException:
            sink.abort()
            raise
    return time.perf_counter() - t0


def run_bench(input: str | None, *, scale: int, config: Any, model: str | None, frames: int, size: str,
              repeats: int) -> dict[str, Any]:
    cfg = resolve_config(config, scale, {"encode": BENCH_ENCODE})
    model = model or cfg.upscale.branches[-1].model
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError as e:
        raise ConfigError(f"--size must be WIDTHxHEIGHT, got {size!r}") from e
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        clip = input or str(write_clip(Path(tmp) / "clip.mp4", width=w, height=h, frames=frames))
        pipe_s, naive_s, n = [], [], 0
        for _ in range(repeats):
            report = upscale(clip, str(Path(tmp) / "pipeline.mkv"), config=cfg)
            pipe_s.append(report.elapsed_s)
            n = report.frames
            naive_s.append(naive_loop(clip, str(Path(tmp) / "naive.mkv"), cfg, model))
    pipeline_fps = n / statistics.median(pipe_s)
    naive_fps = n / statistics.median(naive_s)
    return {"clip": input or f"generated {w}x{h}", "frames": n, "size": size if input is None else "input",
            "scale": scale, "repeats": repeats, "pipeline_fps": pipeline_fps, "naive_fps": naive_fps,
            "naive_model": model, "ratio": pipeline_fps / naive_fps,
            "tiles_per_class": report.tiles_per_class, "pipeline_s": pipe_s, "naive_s": naive_s}
