"""The library facade. The CLI only calls what is here.

    report = vsr_stream.upscale("in.mp4", "out.mp4", scale=4)
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from vsr_stream.config import PipelineConfig, deep_merge, load_config
from vsr_stream.errors import ConfigError, SinkError, SourceError, StageFailedError
from vsr_stream.media.sink import check_output
from vsr_stream.media.source import open_source
from vsr_stream.media.urls import is_live_url, redact_url
from vsr_stream.models import build_model, get
from vsr_stream.runtime.fused import run_fused
from vsr_stream.runtime.graph import build_graph
from vsr_stream.runtime.supervisor import Supervisor
from vsr_stream.stages.classify import check_classifier
from vsr_stream.transport import make_endpoints

log = logging.getLogger(__name__)

ConfigLike = str | os.PathLike[str] | dict[str, Any] | PipelineConfig | None
LIVE_PRESET = "live"  # the config of live inputs when none is given (configs/live.toml)
_TYPED = {"SourceError": SourceError, "SinkError": SinkError, "ConfigError": ConfigError}


@dataclass(frozen=True)
class Report:
    """What a run did. ``tiles_per_class[k]`` counts the tiles routed to branch k."""

    input: str
    output: str
    scale: int
    frames: int
    tiles_per_class: list[int]
    passthrough_packets: int
    dropped_packets: int
    resized_frames: int
    elapsed_s: float
    transport: str
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_median_ms: float | None = None  # ingest (decode) to encode, per frame
    latency_p95_ms: float | None = None
    ingest_drops: int = 0  # live input: frames dropped at ingest to keep the latency budget
    reconnects: int = 0  # live input: connections re-established after a stall, error or end
    tiles_reused: int = 0  # tiles taken unchanged from the previous output frame (temporal reuse)

    @property
    def fp32_retries(self) -> int:
        """Half-precision batches that gave NaN/Inf and were run again in fp32, over all branch workers."""
        return sum(int(s.get("fp32_retries", 0)) for name, s in self.stages.items() if name.startswith("upscale"))

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fps": self.fps, "fp32_retries": self.fp32_retries}

    def summary(self) -> str:
        total = sum(self.tiles_per_class) or 1
        shares = ", ".join(f"class {k}: {n} ({100 * n / total:.1f}%)" for k, n in enumerate(self.tiles_per_class))
        notes = [f"{self.passthrough_packets} passthrough packets copied"]
        if self.tiles_reused:
            notes.append(f"{self.tiles_reused} tiles reused from the previous frame")
        if self.dropped_packets:
            notes.append(f"{self.dropped_packets} passthrough packets NOT written (the output cannot hold them)")
        if self.resized_frames:
            notes.append(f"{self.resized_frames} frames resized to the first frame's size")
        if self.reconnects:
            notes.append(f"{self.reconnects} reconnect(s) to the input")
        if self.ingest_drops:
            notes.append(f"{self.ingest_drops} frames dropped at ingest (upscaling was slower than the stream)")
        if self.latency_median_ms is not None:
            notes.append(f"latency median {self.latency_median_ms:.0f} ms, p95 {self.latency_p95_ms:.0f} ms")
        if self.fp32_retries:
            notes.append(f"{self.fp32_retries} half-precision batches overflowed and were redone in fp32")
        return (f"{self.frames} frames ×{self.scale} in {self.elapsed_s:.2f} s ({self.fps:.2f} fps); "
                f"tiles {shares}; {'; '.join(notes)}; output {self.output}")


def resolve_config(config: ConfigLike = None, scale: int | None = None,
                   overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Validated config: ``overrides`` and ``scale`` over the environment over ``config``."""
    top = deep_merge(overrides or {}, {"scale": scale} if scale is not None else {})
    cfg = load_config(config, top)
    check_models(cfg)
    return cfg


def check_models(cfg: PipelineConfig) -> None:
    """Fail before any frame is read if a branch's model, scale or weights, or the tile
    classifier, are wrong."""
    check_classifier(cfg)
    for k, branch in enumerate(cfg.upscale.branches):
        try:
            build_model(branch.model, cfg.scale, weights=branch.weights, allow_random=cfg.upscale.allow_random_weights)
        except (LookupError, ValueError) as e:
            raise ConfigError(f"upscale.branches.{k}: {e}") from e
        if branch.precision in ("fp16", "bf16") and not get(branch.model).supports_half:
            raise ConfigError(f"upscale.branches.{k}.precision: {branch.model} runs only in fp32")
        radius = get(branch.model).receptive_radius_px
        if cfg.tiling.context_px < radius:
            log.warning("tiling.context_px=%d is below %s's receptive radius %d px: tile seams may show",
                        cfg.tiling.context_px, branch.model, radius)


def upscale(input: str | os.PathLike[str], output: str | os.PathLike[str], *, scale: int | None = None,
            config: ConfigLike = None, overrides: dict[str, Any] | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> Report:
    """Upscale a video, image, image sequence, image folder or live stream into ``output``.

    ``progress(frames_done, frames_total_or_None)`` is called as frames are written.
    Raises ConfigError (bad config), SourceError (bad input), SinkError (bad output),
    StageFailedError (a stage failed), Cancelled (stopped); no partial output is left.

    A live input (``rtsp://``, ... see :func:`~vsr_stream.media.urls.is_live_url`) uses the
    ``live`` preset unless ``config`` is given, runs until it ends or a decode limit
    (``max_frames``, ``max_duration_s``) is reached, and is written in place to .mkv/.ts or
    published to ``rtsp://``; KeyboardInterrupt (Ctrl-C, SIGTERM in the CLI) drains the pipeline
    and returns the report of what was written (a second one abandons the drain).
    """
    src, dst = os.fspath(input), os.fspath(output)
    live = is_live_url(src)
    cfg = resolve_config(LIVE_PRESET if config is None and live else config, scale, overrides)
    check_output(dst, cfg.encode.overwrite, live)
    if live:
        total = cfg.decode.max_frames  # no probe: the decode stage's connection is the only one
    else:
        with open_source(src, cfg.decode) as probe:
            total = probe.info.video.frame_count
    on_progress = None if progress is None else (lambda h: progress(h["frames"], total))
    t0 = time.monotonic()
    try:
        if cfg.transport.mode == "fused":
            stats = run_fused(cfg, src, dst, on_progress)
        else:
            stats = _run_graph(cfg, src, dst, on_progress, drain_on_interrupt=live)
    except StageFailedError as e:
        typed = _TYPED.get(getattr(e, "error_type", ""))
        if typed is not None:
            raise typed(str(e)) from e
        raise
    return _report(cfg, src, dst, stats, time.monotonic() - t0)


def _run_graph(cfg: PipelineConfig, src: str, dst: str, on_progress: Callable[[dict[str, Any]], None] | None,
               drain_on_interrupt: bool = False) -> dict[str, dict[str, Any]]:
    """The stages joined by ZeroMQ (inproc, ipc, tcp); each stage's stats by name."""
    ep = make_endpoints(cfg.transport, cfg.n_classes)
    for k, branch in enumerate(cfg.upscale.branches):
        if branch.workers == 0:
            log.warning("class %d has no built-in worker: waiting for `vsr-stream worker --connect %s --class %d`",
                        k, ep.directory, k)
    try:
        return Supervisor(cfg, build_graph(cfg, src, dst, ep), ep, on_progress, drain_on_interrupt).run()
    finally:
        if ep.ipc_dir:
            shutil.rmtree(ep.ipc_dir, ignore_errors=True)


def _report(cfg: PipelineConfig, src: str, dst: str, stats: dict[str, dict[str, Any]], elapsed: float) -> Report:
    return Report(input=redact_url(src), output=redact_url(dst), scale=cfg.scale, frames=stats["encode"]["frames"],
                  tiles_per_class=stats["classify"]["tiles_per_class"],
                  tiles_reused=stats["classify"].get("tiles_reused", 0),
                  passthrough_packets=stats["encode"]["packets_written"],
                  dropped_packets=stats["encode"]["packets_dropped"],
                  resized_frames=stats["encode"]["resized_frames"], elapsed_s=elapsed,
                  transport=cfg.transport.mode, stages=stats,
                  latency_median_ms=stats["encode"].get("latency_median_ms"),
                  latency_p95_ms=stats["encode"].get("latency_p95_ms"),
                  ingest_drops=stats.get("decode", {}).get("ingest_drops", 0),
                  reconnects=stats.get("decode", {}).get("reconnects", 0))
