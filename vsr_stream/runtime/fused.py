"""Fused mode (``transport.mode = "fused"``): the five stages as one loop in the calling thread.

No sockets: per frame, decode → classify → upscale → stitch → encode run in order, decode
ahead in its own thread and encode behind in another; under NumPy the stitch runs in the encode
thread too, so it overlaps the next frame's classify and networks instead of waiting for them, and
the networks run in a pool of threads (``transport.fused_networks``), one frame's beside the next's. The LR
frame is uploaded once (``xp.asarray``); its TVAT classes, tile windows, upscaled windows and the
blended HR frame stay in ``xp``'s memory (CuPy on the branches' CUDA device, else NumPy), each
branch network gets its windows as a torch view of that memory (DLPack / ``torch.from_numpy``,
no copy), and only the finished frame is downloaded, into the sink the encode stage uses. Every
step is the stage modules' own function, so the output is the staged pipeline's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vsr_stream.config import BranchConfig, PipelineConfig
from vsr_stream.cpuinfo import usable_cores
from vsr_stream.errors import ProtocolError, StageFailedError
from vsr_stream.media.items import PacketItem, VideoFrameItem
from vsr_stream.media.sink import Sink, open_sink
from vsr_stream.media.sink_thread import ThreadedSink
from vsr_stream.media.source import open_source
from vsr_stream.models.inference import BranchModel
from vsr_stream.ops.blend import accumulate_tiles, normalize, stitch_cores
from vsr_stream.ops.merge import window_batches
from vsr_stream.ops.tensors import as_tensor, from_tensor
from vsr_stream.stages.classify import (ReuseTracker, branch_context_px, check_classifier, cut_windows, tile_classes,
                                        tile_plan, with_context)
from vsr_stream.runtime.interrupts import safe_points
from vsr_stream.runtime.latency import LatencyMeter
from vsr_stream.runtime.memory import trim_due, trim_heap
from vsr_stream.stages.decode import DecodeFeed
from vsr_stream.stages.encode import finish_sink, sink_counters
from vsr_stream.stages.stitch import corrected_previous, feather_ramp_px, fill_reused, hr_canvas, reused_behind

log = logging.getLogger(__name__)

_END = object()
ProgressFn = Callable[[dict[str, Any]], None]  # called with {"frames": n}, like the supervisor's PROGRESS


def run_fused(cfg: PipelineConfig, source_url: str, output: str, progress: ProgressFn | None = None,
              xp: ModuleType | None = None) -> dict[str, dict[str, Any]]:
    """Upscale ``source_url`` into ``output`` in this thread; returns per-stage stats keyed like
    the supervisor's (decode, classify, upscale<k>, stitch, encode).

    ``xp`` forces the array module (tests pass an emulated CuPy); None picks it with
    :func:`choose_array_module`. A failure is raised as the staged modes report it: a
    StageFailedError naming the step, with the original's class name in ``error_type`` (the
    API turns SourceError, SinkError and ConfigError back into their own types). After any
    failure, KeyboardInterrupt included, the output is removed.
    """
    loop = FusedLoop(cfg)
    try:
        loop.setup(xp)
        loop.run(source_url, output, progress)
    except Exception as e:  # the one place a step's failure is caught: reported as a stage's would be
        step, cause = (e.step, e.__cause__) if isinstance(e, _StepFailure) else (loop.step, e)
        failed = StageFailedError(step, str(cause) or type(cause).__name__)
        failed.error_type = type(cause).__name__
        raise failed from cause
    return loop.stats()


class _StepFailure(Exception):
    """A failure of ``step`` in another thread (its ``__cause__``), raised in this one by the next
    call on that thread's queue: reported as that step's, not as the call's."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


def choose_array_module(branches: list[BranchConfig], devices: list[torch.device]) -> ModuleType:
    """CuPy when every branch runs (``devices``) on one CUDA device that CuPy can use, made CuPy's
    current device; else NumPy, saying why in one warning if a branch asked for CUDA."""
    why = _why_not_cupy(set(devices))
    if why is None:
        import cupy

        cupy.cuda.Device(devices[0].index).use()
        log.info("fused mode: frames stay on %s (CuPy)", devices[0])
        return cupy
    if any(torch.device(b.device).type == "cuda" for b in branches):
        log.warning("fused mode: frames are processed in host memory (NumPy): %s", why)
    return np


def _why_not_cupy(devices: set[torch.device]) -> str | None:
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        return f"the branches run on {', '.join(sorted(map(str, devices)))}, not on one CUDA device"
    try:
        import cupy
    except ImportError as e:
        return f"CuPy is not importable ({e}); install vsr-stream[gpu]"
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:
        return f"CuPy cannot use CUDA ({e})"
    return None


class FusedLoop:
    """One fused run: the branch models, the array module, and what the stages would count."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.step = "setup"  # the step running now: a failure is reported as this stage's
        self.models: list[BranchModel] = []
        self.xp: ModuleType = np
        self.ramp_px = feather_ramp_px(cfg)
        self.frames = self.packets = 0
        self.tiles = [0] * cfg.n_classes
        self.batches = [0] * cfg.n_classes
        self.window_px = [0] * cfg.n_classes  # LR pixels through each class's network (windows, merged or not)
        self.reuse = ReuseTracker(cfg.reuse)
        self.previous: Any = None  # the last output frame in xp's memory, while reuse is on
        self.busy_s: dict[str, float] = defaultdict(float)  # time this thread spent in each step
        self.work_s: dict[str, float] = {}  # decode and encode time in their own threads
        self.written: dict[str, int] = {}
        self.ingest: dict[str, Any] = {}
        self.latency = LatencyMeter()
        self.pool: ThreadPoolExecutor | None = None  # the CPU networks' threads (transport.fused_networks)
        self.network_wait_s = 0.0  # time the stitch spent waiting for the pool's networks
        self._counts_lock = threading.Lock()  # the network counters, updated from the pool's threads

    def setup(self, xp: ModuleType | None = None) -> None:
        check_classifier(self.cfg)
        branches = self.cfg.upscale.branches
        self.models = [BranchModel(b, self.cfg.scale, self.cfg.upscale.allow_random_weights) for b in branches]
        self.context_px = branch_context_px(self.cfg)
        self.xp = xp or choose_array_module(branches, [m.device for m in self.models])

    def run(self, source_url: str, output: str, progress: ProgressFn | None) -> None:
        self.step = "decode"
        # decoding runs ahead in its own thread and encoding behind in another, so both overlap
        # the networks; every frame still passes through here, in order
        feed = DecodeFeed(open_source(source_url, self.cfg.decode), self.cfg.decode, read_ahead=True)
        self.pool = network_pool(self.cfg) if self.xp is np else None
        torch_threads = torch.get_num_threads()  # the pool's threads set the process's count: restored after
        try:
            self.step = "encode"
            sink = ThreadedSink(open_sink(output, self.cfg.encode, feed.source.info, self.cfg.scale))
            try:
                self._pump(feed, sink, progress)
            except BaseException:
                finish_sink(sink, ok=False)
                raise
            with self._timed("encode"):
                finish_sink(sink, ok=True)
            self.written = sink_counters(sink)
            self.work_s = {"decode": feed.ingest.busy_s if feed.ingest else 0.0, "encode": sink.busy_s,
                           "stitch": self.busy_s["stitch"] + sink.prepare_s - self.network_wait_s}
            self.ingest = feed.stats()
        finally:
            if self.pool is not None:  # what a failure left queued is dropped; a running call ends first
                self.pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(torch_threads)
            feed.close()

    def _pump(self, feed: DecodeFeed, sink: ThreadedSink, progress: ProgressFn | None) -> None:
        live = feed.source.info.live
        with safe_points(live) as deliver:  # live: an interrupt ends the input between two frames
            self._pump_frames(feed, sink, progress, deliver)
        with self._timed("encode"):
            sink.flush()
        if sink.frames_written != self.frames:
            raise ProtocolError(f"encode: {self.frames} frames decoded, the output took {sink.frames_written}")

    def _pump_frames(self, feed: DecodeFeed, sink: ThreadedSink, progress: ProgressFn | None,
                     safe_point: Callable[[], None]) -> None:
        try:
            for item, ingest_s in self._entries(feed, safe_point):
                if isinstance(item, PacketItem):
                    with self._timed("encode"):
                        sink.write_packet(item)
                    self.packets += 1
                    continue
                self.latency.ingested(item.index, ingest_s)
                self._frame(item, sink)
                if trim_due(self.frames):
                    trim_heap()
                if progress is not None:
                    progress({"frames": self.frames})
            safe_point()  # one that came with the end of the input: nothing is left to end
        except KeyboardInterrupt:
            if not feed.source.info.live:
                raise
            log.warning("interrupted: ending the live input here and finalising the output")

    def _entries(self, feed: DecodeFeed,
                 safe_point: Callable[[], None]) -> Iterator[tuple[VideoFrameItem | PacketItem, float]]:
        entries = feed.entries()
        while True:
            safe_point()  # also while a live source has nothing new (entry None)
            with self._timed("decode"):
                entry = next(entries, _END)
            if entry is _END:
                return
            if entry is not None:  # None: a live source had nothing new yet
                yield entry

    def _frame(self, item: VideoFrameItem, sink: Sink) -> None:
        xp = self.xp
        with self._timed("classify"):
            frame = xp.asarray(item.array)  # the frame's one upload (NumPy: no copy)
            h, w = frame.shape[:2]
            geom = tile_plan(h, w, self.cfg.tiling)
            reused = self.reuse.reused(frame, geom, self.frames)
            kept = geom[~reused]
            classes = _to_host(tile_classes(frame, kept, self.cfg.classify), xp)  # a byte per tile upscaled
            calls = []  # (class, rows): each a network call on tile windows, or merged ones (merge_px)
            for k, (branch, context_px) in enumerate(zip(self.cfg.upscale.branches, self.context_px)):
                mine = with_context(kept[classes == k], h, w, self.cfg.tiling, context_px)
                self.tiles[k] += len(mine)
                calls += [(k, rows) for rows, _ in window_batches(mine, branch.merge_px, branch.max_batch)]
        change = self.reuse.change  # the tracker's, until the next frame
        if not reused.any() and len(calls) == 1 and _whole_frame(calls[0][1], h, w):
            whole = self._network(calls[0][0], frame, None)  # one window, the frame: its output is the frame
            finish: Callable[[], Any] = lambda: self._waited([whole])[0][0]  # noqa: E731
        else:
            pending = [(rows, self._network(k, frame, rows)) for k, rows in calls]
            finish = partial(self._stitched, frame.shape, frame.dtype, geom, reused, pending, change)
        if xp is np:  # stitched in the encode thread, in order, beside the next frame's networks
            with self._timed("encode"):
                sink.write_frame(item, on_written=self._encoded, prepare=partial(self._output, finish))
        else:  # kernels queued on the device: stitched here, then the frame's one download
            with self._timed("stitch"):
                out = self._output(finish)
            with self._timed("encode"):
                sink.write_frame(replace(item, array=_to_host(out, xp)), on_written=self._encoded)
        self.frames += 1

    def _output(self, finish: Callable[[], Any]) -> Any:
        """The output frame ``finish`` gives, kept as the previous one while reuse is on. Runs once per
        frame, in frame order (in the encode thread under NumPy); a failure is the stitch's."""
        try:
            out = finish()
        except _StepFailure:  # a network's, from the pool
            raise
        except Exception as e:
            raise _StepFailure("stitch") from e
        self.previous = out if self.cfg.reuse.enabled else None
        return out

    def _stitched(self, lr_shape: tuple[int, ...], dtype: Any, geom: np.ndarray, reused: np.ndarray,
                  pending: list[tuple[np.ndarray, Callable[[], Any]]], change: Any) -> Any:
        """The HR frame of the upscaled windows (``pending``: their rows, and what gives their HR
        windows, see :meth:`_network`) and, where ``reused``, the previous output (corrected by the
        LR ``change`` when it is not None)."""
        scale, xp = self.cfg.scale, self.xp
        parts = list(zip([rows for rows, _ in pending], self._waited([result for _, result in pending])))
        shape = (lr_shape[0] * scale, lr_shape[1] * scale, lr_shape[2])
        previous = self.previous
        if reused.any() and change is not None:
            previous = corrected_previous(previous, change, scale)
        if xp is np:  # paste the cores, blend only where they overlap (stitch_cores)
            if not reused.any():
                return stitch_cores(parts, scale, self.ramp_px, shape, dtype)
            return stitch_cores(parts, scale, self.ramp_px, shape, dtype, base=previous,
                                behind=reused_behind(previous, geom[reused], geom[~reused], scale, shape))
        acc, wsum = hr_canvas(lr_shape[0], lr_shape[1], scale, xp)  # on the GPU: blend.cu kernels
        for rows, hr in parts:
            accumulate_tiles(acc, wsum, hr, rows, scale, self.ramp_px)
        if reused.any():  # after the upscaled tiles, as on the CPU
            fill_reused(acc, wsum, previous, geom[reused], scale, self.ramp_px)
        return normalize(acc, wsum, dtype)

    def _encoded(self, item: VideoFrameItem) -> None:
        """Called by the encode thread once ``item`` is written: its ingest-to-encode latency."""
        self.latency.encoded(item.index, time.monotonic())

    def _waited(self, results: list[Callable[[], Any]]) -> list[Any]:
        """The HR windows each of ``results`` (see :meth:`_network`) gives, waited for; the wait is
        counted apart from the stitch's own work."""
        t0 = time.perf_counter()
        windows = [result() for result in results]
        if self.pool is not None:
            self.network_wait_s += time.perf_counter() - t0
        return windows

    def _network(self, k: int, frame: Any, rows: np.ndarray | None) -> Callable[[], Any]:
        """Class ``k``'s network on ``frame``'s windows ``rows`` (None: the whole frame as one), started
        now. Returns what gives the HR windows: at once, or with a pool, when its thread has run them
        (a failure there raised as this step's, ``upscale<k>``)."""
        if self.pool is None:
            with self._timed(f"upscale{k}"):
                out = self._upscale(k, frame, rows)
            return lambda: out
        return self.pool.submit(self._pooled_upscale, k, frame, rows).result

    def _pooled_upscale(self, k: int, frame: Any, rows: np.ndarray | None) -> Any:
        """:meth:`_upscale` of ``frame``'s windows ``rows`` in a pool thread, timed there."""
        t0 = time.perf_counter()
        try:
            return self._upscale(k, frame, rows)
        except Exception as e:
            raise _StepFailure(f"upscale{k}") from e
        finally:
            with self._counts_lock:
                self.busy_s[f"upscale{k}"] += time.perf_counter() - t0

    def _upscale(self, k: int, frame: Any, rows: np.ndarray | None) -> Any:
        """Class ``k``'s network on ``frame``'s windows ``rows`` (None: the whole frame as one; xp,
        NHWC); the HR windows in xp's memory."""
        windows = frame[None] if rows is None else cut_windows(frame, rows)
        model = self.models[k]
        y = model.upscale_tensor(as_tensor(windows).to(model.device))  # .to: a no-op unless a branch sits elsewhere
        with self._counts_lock:
            self.batches[k] += 1
            self.window_px[k] += windows.shape[0] * windows.shape[1] * windows.shape[2]
        return from_tensor(y, self.xp)

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        self.step = step
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.busy_s[step] += time.perf_counter() - t0

    def stats(self) -> dict[str, dict[str, Any]]:
        busy = self.busy_s
        # with a pool, busy_s sums its threads' time: calls_at_once of them ran side by side
        at_once = self.cfg.transport.fused_networks if self.pool is not None else 1
        upscale = {f"upscale{k}": {"cls": k, "tiles": self.tiles[k], "batches": self.batches[k],
                                   "window_px": self.window_px[k],
                                   "busy_s": busy[f"upscale{k}"], "calls_at_once": at_once,
                                   "fp32_retries": m.fp32_retries, "precision": m.precision, "layout": m.layout}
                   for k, m in enumerate(self.models)}
        # decode and encode (with the stitch, under NumPy) run in their own threads: their busy time
        # is their work there, and waiting for them shows as "wait_s" (a step slower than the networks)
        return {"decode": {"frames": self.frames, "packets": self.packets, **self.ingest,
                           "busy_s": self.work_s.get("decode", busy["decode"]), "wait_s": busy["decode"]},
                "classify": {"frames": self.frames, "tiles_per_class": list(self.tiles),
                             "tiles_reused": self.reuse.reused_total, "busy_s": busy["classify"]},
                **upscale,
                "stitch": {"frames": self.frames, "busy_s": self.work_s.get("stitch", busy["stitch"])},
                "encode": {"frames": self.frames, "packets": self.packets, **self.written, **self.latency.summary(),
                           "busy_s": self.work_s.get("encode", busy["encode"]), "wait_s": busy["encode"]}}


def network_pool(cfg: PipelineConfig) -> ThreadPoolExecutor | None:
    """Threads for the CPU networks: ``transport.fused_networks`` of them (None for 1), each with
    the largest ``threads`` of the branches, else this process's cores shared among them."""
    n = cfg.transport.fused_networks
    if n <= 1:
        return None
    threads = max(b.threads for b in cfg.upscale.branches) or max(1, usable_cores() // n)
    # torch's OpenMP team size is the calling thread's setting: set in each of the pool's as it starts
    return ThreadPoolExecutor(n, thread_name_prefix="vsr-network", initializer=torch.set_num_threads,
                              initargs=(threads,))


def _whole_frame(rows: np.ndarray, h: int, w: int) -> bool:
    """``rows`` is one tile (merged or not) whose core and window are the whole ``h x w`` frame."""
    return len(rows) == 1 and tuple(int(v) for v in rows[0, 1:]) == (0, 0, h, w, 0, 0, h, w)


def _to_host(a: Any, xp: ModuleType) -> np.ndarray:
    return a if xp is np else xp.asnumpy(a)
