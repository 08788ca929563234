"""Measured runs. Each pipeline or naive run happens in a fresh spawned process
(:func:`in_child`), so one run's memory peak and torch thread settings never leak into another.

The naive loop: decode -> the whole frame through one branch network (:class:`BranchModel`,
so the same precision, layout and threads as the pipeline's branch) -> encode, one frame at
a time, with the pipeline's encoder settings. Both are timed end to end, model setup included.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, TypeVar

import torch

from vsr_stream import errors
from vsr_stream.api import upscale
from vsr_stream.config import BranchConfig, PipelineConfig
from vsr_stream.errors import StageFailedError, VsrError
from vsr_stream.media.items import VideoFrameItem
from vsr_stream.media.sink import open_sink
from vsr_stream.media.source import open_source
from vsr_stream.models.inference import PRECISIONS, BranchModel

T = TypeVar("T")
_MATMUL_START_N = 128
_MATMUL_MAX_N = 1024


def in_child(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh spawned process, returning its (picklable) result.

    A VsrError raised there is raised here: ConfigError, SourceError and SinkError as
    themselves, any other as StageFailedError(``what``, its message); a process that dies
    is a StageFailedError too.
    """
    level = logging.getLogger("vsr_stream").getEffectiveLevel()
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcome = pool.submit(_guarded, level, fn, *args).result()
    except BrokenProcessPool as e:
        raise StageFailedError(what, f"the measuring process died ({e})") from e
    if outcome[0] == "ok":
        return outcome[1]
    _, name, message = outcome
    typed = {c.__name__: c for c in (errors.ConfigError, errors.SourceError, errors.SinkError)}.get(name)
    raise typed(message) if typed else StageFailedError(what, f"{name}: {message}")


def _guarded(log_level: int, fn: Callable[..., Any], *args: Any) -> tuple:
    """The child's side of :func:`in_child`: VsrErrors come back as (name, message), since
    not every one of them survives pickling."""
    logging.getLogger("vsr_stream").setLevel(log_level)
    try:
        return "ok", fn(*args)
    except VsrError as e:
        return "error", type(e).__name__, str(e)


def pipeline_run(cfg: PipelineConfig, src: str, dst: str, peak_every_frames: int = 0) -> dict[str, Any]:
    """(In a child.) One pipeline run: the report as a dict, this process's peak memory, the
    time of stages that report no busy time measured alone, and each branch's resolved numerics.

    With ``peak_every_frames`` > 0 also ``peak_rss_by_frames``: ``[frames written, peak RSS so far
    in MiB]`` each time that many more frames are written. One run's curve shows whether memory
    keeps growing or levels off, free of the run-to-run spread of separate runs' peaks."""
    curve: list[list[float]] = []

    def progress(done: int, _total: int | None) -> None:
        if peak_every_frames and done >= (len(curve) + 1) * peak_every_frames:
            curve.append([done, peak_rss_mib()["peak_rss_mib"]])

    report = upscale(src, dst, config=cfg, progress=progress if peak_every_frames else None)
    out = {"report": report.to_dict(), **peak_rss_mib()}  # before anything else allocates
    if peak_every_frames:
        out["peak_rss_by_frames"] = curve
    out["alone_s"] = {} if "busy_s" in report.stages.get("decode", {}) else {"decode": decode_alone_s(src, cfg)}
    out["numerics"] = [numerics_of(BranchModel(b, cfg.scale, cfg.upscale.allow_random_weights), b)
                       for b in cfg.upscale.branches]
    return out


def naive_run(cfg: PipelineConfig, branch: BranchConfig, src: str, dst: str) -> dict[str, Any]:
    """(In a child.) One naive-loop run with ``branch``'s network: seconds (model setup
    included), frames, the resolved numerics and this process's peak memory."""
    t0 = time.perf_counter()
    net = BranchModel(branch, cfg.scale, cfg.upscale.allow_random_weights)
    frames = naive_loop(net, src, dst, cfg)
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "frames": frames, "numerics": numerics_of(net, branch), **peak_rss_mib()}


def naive_loop(net: BranchModel, src: str, dst: str, cfg: PipelineConfig) -> int:
    """Upscale ``src`` into ``dst`` frame by frame, whole frames through ``net``, passthrough
    packets copied; returns the frame count. The output is removed on failure."""
    frames = 0
    with open_source(src, cfg.decode) as source:
        sink = open_sink(dst, cfg.encode, source.info, cfg.scale)
        try:
            for item in source.items():
                if isinstance(item, VideoFrameItem):
                    hr = net.upscale(item.array[None])[0]
                    sink.write_frame(VideoFrameItem(item.index, item.pts, item.time_base, item.duration, hr, item.name))
                    frames += 1
                else:
                    sink.write_packet(item)
            sink.close()
        except BaseException:
            sink.abort()
            raise
    return frames


def decode_alone_s(src: str, cfg: PipelineConfig) -> float:
    """Seconds to decode every item of ``src`` with nothing else running."""
    t0 = time.perf_counter()
    with open_source(src, cfg.decode) as source:
        for _ in source.items():
            pass
    return time.perf_counter() - t0


def peak_rss_mib() -> dict[str, float]:
    """This process's resident-set high-water mark, and the largest of its ended child
    processes' (the stage processes of ipc/tcp runs), in MiB."""
    unit = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit,
            "peak_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit}


def numerics_of(net: BranchModel, branch: BranchConfig) -> dict[str, str | None]:
    """The precision and layout ``net`` resolved to ("auto" settled), read from the model where
    BranchModel reports them, else the configured precision and no layout."""
    return {"precision": str(getattr(net, "precision", branch.precision)),
            "layout": getattr(net, "layout", None)}


def matmul_peak_gmacs(threads: int, budget_s: float = 0.5, attempts: int = 3) -> dict[str, float]:
    """Best rate of square ``torch.matmul`` on the CPU with ``threads`` intra-op threads, in
    10^9 multiply-adds per second (n^3 per product), for fp32 and bf16: the best of ``attempts``
    rounds of about ``budget_s`` per dtype (at most about twice that where a dtype is very slow).

    The size doubles from 128 to at most 1024 while a product takes under a fifth of the
    budget, then products of that size are timed until the budget is spent: large products,
    because small ones are dominated by thread start-up and, with the cores shared, by
    threads waiting for each other. The rounds alternate the dtypes, so a passing disturbance
    spoils one round of each at most: one round once read 67 GMAC/s in bf16 where the others
    read 210-220. Meaningful only on an otherwise idle machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = {name: 0.0 for name in ("fp32", "bf16")}
        for _ in range(attempts):
            for name in best:
                best[name] = max(best[name], _best_matmul_rate(PRECISIONS[name], budget_s) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def _best_matmul_rate(dtype: torch.dtype, budget_s: float) -> float:
    deadline = time.perf_counter() + budget_s
    n = _MATMUL_START_N
    while True:
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        took = _timed_matmul(a, b)  # also the warm-up: the first product of a size allocates
        if n >= _MATMUL_MAX_N or took > budget_s / 5 or time.perf_counter() >= deadline:
            break
        n *= 2
    best = 0.0
    while best == 0.0 or time.perf_counter() < deadline:
        best = max(best, n**3 / _timed_matmul(a, b))
    return best


def _timed_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    t0 = time.perf_counter()
    torch.matmul(a, b)
    return time.perf_counter() - t0
