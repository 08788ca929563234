"""Classify stage: cuts each LR frame into overlapping tiles and routes them by TVAT class.

Receives: FRAME (LR) on classify_in.
Classes come from TVAT thresholds, or from a learned ClassSR tile classifier
(``classify.classifier``) run on each tile's core.
Emits: PLAN (geometry, tile count, the tiles reused from the previous output and the LR change
that corrects them) on 'plans' to stitch;
TILES (windows of one class, in chunks of that branch's max_batch) on 'tiles<k>' to the class-k
worker pool. Reused tiles (see :class:`ReuseTracker`) go to no branch.
Binds: classify_in (PULL), tiles<k> (PUSH fan-out). Connects: stitch_in. Queue policy: block.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np

from vsr_stream import messages as m
from vsr_stream.config import ClassifyConfig, PipelineConfig, ReuseConfig, TilingConfig
from vsr_stream.errors import ConfigError, ProtocolError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops import array_module
from vsr_stream.ops.reuse import core_change, core_rows, decide_reuse, first_ages, lr_change
from vsr_stream.ops.tvat import classify, tile_tvat, vsp
from vsr_stream.stage import Out, Stage


@lru_cache(maxsize=16)
def tile_plan(h: int, w: int, tiling: TilingConfig) -> np.ndarray:
    """:func:`~vsr_stream.geometry.plan_tiles` of an ``h x w`` frame, cached per size, read-only."""
    geom = plan_tiles(h, w, tiling.tile_px, tiling.overlap_px, tiling.context_px)
    geom.flags.writeable = False  # shared by every frame of this size
    return geom


def branch_context_px(cfg: PipelineConfig) -> tuple[int, ...]:
    """LR context of each branch's windows: ``tiling.context_px``, cut down to the branch model's
    receptive radius. More context than the radius leaves the network's output on the core
    unchanged (that is what the radius means) and only costs work, so a shallow branch beside a
    deep one runs on smaller windows."""
    from vsr_stream.models.registry import get

    return tuple(min(cfg.tiling.context_px, get(b.model).receptive_radius_px) for b in cfg.upscale.branches)


def with_context(geom: np.ndarray, h: int, w: int, tiling: TilingConfig, context_px: int) -> np.ndarray:
    """``geom`` rows of an ``h x w`` frame's :func:`tile_plan` with their windows planned at
    ``context_px`` instead of ``tiling.context_px`` (the cores are the same at any context)."""
    if context_px == tiling.context_px or not len(geom):
        return geom
    plan = tile_plan(h, w, tiling.model_copy(update={"context_px": context_px}))
    out = geom.copy()
    out[:, 5:] = plan[geom[:, 0], 5:]
    return out


def tile_classes(frame: Any, geom: np.ndarray, cfg: ClassifyConfig) -> Any:
    """Class of every tile of ``geom``: int8 ``(n,)`` on ``frame``'s device; all zeros for a single
    class. By the learned classifier if ``cfg.classifier`` names one, else by TVAT."""
    if cfg.classifier is not None and len(geom):
        return learned_classes(frame, geom, cfg.classifier, cfg.classifier_bias)
    if not cfg.tvat_thresholds or not len(geom):
        return array_module(frame).zeros(len(geom), dtype=np.int8)
    return classify(tile_tvat(vsp(frame), geom, cfg.vsp_threshold), cfg.tvat_thresholds)


def learned_classes(frame: Any, geom: np.ndarray, weights: str, bias: Sequence[float] = ()) -> Any:
    """Class of every tile of ``geom`` (n >= 1) by the tile classifier in ``weights``, which reads each
    tile's core (uint16 frames on the 0-255 scale, as TVAT), ``bias`` added to its logits: int8 ``(n,)``
    on ``frame``'s device. The classifier runs on the CPU; GPU cores are copied to the host for it
    (3 bytes a pixel)."""
    import torch

    from vsr_stream.models.classifier import classify_tiles, load_classifier

    xp = array_module(frame)
    cores = cut_windows(frame, core_rows(geom))
    host = cores if xp is np else xp.asnumpy(cores)
    if host.dtype == np.uint16:
        host = (host >> 8).astype(np.uint8)
    classes = classify_tiles(load_classifier(weights), torch.from_numpy(np.ascontiguousarray(host)), bias)
    return xp.asarray(classes.numpy().astype(np.int8))


def check_classifier(cfg: PipelineConfig) -> None:
    """Load ``cfg``'s tile classifier, if it has one, and check it has a class per branch.

    Raises ConfigError if the weights are missing or unusable, or the class counts differ."""
    if cfg.classify.classifier is None:
        return
    from vsr_stream.models.classifier import load_classifier

    n = load_classifier(cfg.classify.classifier).n_classes
    if n != cfg.n_classes:
        raise ConfigError(f"classify.classifier {cfg.classify.classifier} sorts tiles into {n} classes, "
                          f"but upscale.branches has {cfg.n_classes}")
    if cfg.classify.classifier_bias and len(cfg.classify.classifier_bias) != n:
        raise ConfigError(f"classify.classifier_bias has {len(cfg.classify.classifier_bias)} values; "
                          f"the classifier has {n} classes")


def batches_by_class(geom: np.ndarray, classes: np.ndarray, cfg: PipelineConfig, contexts: tuple[int, ...],
                     frame_hw: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(k, rows)``: the ``geom`` rows of class k (host ``classes``) of an ``frame_hw`` frame, in
    row order, their windows at branch k's context ``contexts[k]`` (:func:`branch_context_px`), in
    chunks of at most that branch's ``max_batch``; class by class. A class without tiles yields nothing."""
    for k, (branch, context_px) in enumerate(zip(cfg.upscale.branches, contexts)):
        rows = with_context(geom[classes == k], *frame_hw, cfg.tiling, context_px)
        for start in range(0, len(rows), branch.max_batch):
            yield k, rows[start:start + branch.max_batch]


def cut_windows(frame: Any, geom: np.ndarray) -> Any:
    """(n, wh, ww, C) stack of the LR windows of ``geom`` rows (n >= 1; all windows of a frame
    share a shape), on ``frame``'s device: one gather from a strided view of every window
    position, so there is no copy per tile on the host or the GPU."""
    xp = array_module(frame)
    wh, ww = int(geom[0, 7]), int(geom[0, 8])
    h, w, channels = frame.shape
    sy, sx, sc = frame.strides
    shape = (h - wh + 1, w - ww + 1, wh, ww, channels)  # positions[y, x] is the window at (y, x)
    positions = xp.lib.stride_tricks.as_strided(frame, shape, (sy, sx, sy, sx, sc))
    return positions[xp.asarray(geom[:, 5]), xp.asarray(geom[:, 6])]


class ReuseTracker:
    """Which tiles of each frame are reused from the previous output (:mod:`vsr_stream.ops.reuse`).

    Keeps, per tile, its LR core as it was when last upscaled (on the frame's device) and how many
    frames in a row it has been reused (staggered after a reset: :func:`~vsr_stream.ops.reuse.first_ages`).
    Nothing is reused on the first frame, after a change of frame size or dtype, or after a gap in
    the frame indices (a frame this tracker did not see).

    :attr:`change`, after each :meth:`reused`: the frame's LR change since the previous frame
    (:func:`~vsr_stream.ops.reuse.lr_change`) when it reuses a tile and ``cfg.correct`` is on, else
    None: what ``stages.stitch.corrected_previous`` adds to the previous output's reused tiles.
    """

    def __init__(self, cfg: ReuseConfig) -> None:
        self.cfg = cfg
        self.reference: Any = None  # (n, h, w, 3) cores, as last upscaled
        self.age = np.zeros(0, dtype=np.int64)
        self.expected: tuple[Any, ...] | None = None  # (shape, dtype, index) of a frame that continues
        self.last: Any = None  # the previous frame, while reuse corrects
        self.change: Any = None
        self.reused_total = 0

    def reused(self, frame: Any, geom: np.ndarray, index: int) -> np.ndarray:
        """Host bool ``(n,)``: the tiles of ``frame`` (``geom`` rows, frame number ``index``) to reuse.
        The other tiles are upscaled, and their references become this frame's cores."""
        self.change = None
        if not self.cfg.enabled:
            return np.zeros(len(geom), dtype=bool)
        cores = cut_windows(frame, core_rows(geom))
        continues = self.expected == (frame.shape, frame.dtype.name, index)
        self.expected = (frame.shape, frame.dtype.name, index + 1)
        previous, self.last = self.last, frame if self.cfg.correct else None
        if not continues:  # first frame, new size or dtype, or a frame missed: start afresh
            self.reference, self.age = cores, first_ages(len(geom), self.cfg.max_age_frames)
            return np.zeros(len(geom), dtype=bool)
        change = core_change(cores, self.reference, self.cfg.block_px)
        reused, self.age = decide_reuse(change, self.age, self.cfg.mad_threshold, self.cfg.max_age_frames,
                                        self.cfg.min_fraction)
        upscaled = array_module(cores).asarray(np.flatnonzero(~reused))
        self.reference[upscaled] = cores[upscaled]
        self.reused_total += int(reused.sum())
        if previous is not None and reused.any():
            self.change = lr_change(frame, previous)
        return reused


class ClassifyStage(Stage):
    name = "classify"

    def __init__(self, cfg: PipelineConfig) -> None:
        check_classifier(cfg)
        self.cfg = cfg
        self.frames = 0
        self.tiles_per_class = [0] * cfg.n_classes
        self.reuse = ReuseTracker(cfg.reuse)
        self.context_px = branch_context_px(cfg)
        self.busy_s = 0.0

    def process(self, msg: m.Message) -> Iterator[Out]:
        if msg.kind != m.FRAME:
            raise ProtocolError(f"classify expects {m.FRAME}, got {msg.kind}")
        t0 = time.perf_counter()
        frame = msg.arrays[0]
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ProtocolError(f"classify expects (H, W, 3) frames, got shape {frame.shape}")
        h, w = frame.shape[:2]
        geom = tile_plan(h, w, self.cfg.tiling)
        reused = self.reuse.reused(frame, geom, msg.header["index"])
        kept = geom[~reused]  # the tiles to upscale; only they need a class
        classes = tile_classes(frame, kept, self.cfg.classify)
        self.frames += 1
        header = {k: msg.header[k] for k in ("index", "pts", "time_base", "duration", "name")}
        plan = {**header, "h": h, "w": w, "n_tiles": int((~reused).sum()), "dtype": frame.dtype.name}
        payload = [geom[reused]] if reused.any() else []
        if self.reuse.change is not None:  # only set when a tile is reused
            payload.append(self.reuse.change)
        outs = [("plans", m.Message(m.PLAN, plan, payload))]
        outs += list(self._tiles(frame, kept, classes, msg.header["index"]))
        self.busy_s += time.perf_counter() - t0
        yield from outs

    def _tiles(self, frame: np.ndarray, geom: np.ndarray, classes: np.ndarray, index: int) -> Iterator[Out]:
        for k, rows in batches_by_class(geom, classes, self.cfg, self.context_px, frame.shape[:2]):
            self.tiles_per_class[k] += len(rows)
            yield f"tiles{k}", m.Message(m.TILES, {"index": index, "cls": k}, [rows, cut_windows(frame, rows)])

    def on_eos(self, msg: m.Message) -> None:
        if msg["count"] != self.frames:
            raise ProtocolError(f"classify: decode sent {msg['count']} frames, {self.frames} arrived")

    def flush(self) -> Iterator[Out]:
        yield "plans", m.eos(self.frames, path="plans")

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "tiles_per_class": self.tiles_per_class,
                "tiles_reused": self.reuse.reused_total, "busy_s": self.busy_s}
