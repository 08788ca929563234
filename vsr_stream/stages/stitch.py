"""Stitch stage: blends upscaled tiles back into HR frames and releases them in order.

Receives: PLAN (from classify) and RESULT (from every branch worker) on stitch_in, in any order.
Emits: FRAME (HR) on 'frames' to encode, strictly by frame index, each exactly once. A PLAN's
reused tiles are filled from the previous output frame when their frame is released (it is final
by then); only that one previous frame is kept.
Binds: stitch_in (PULL fan-in). Connects: encode_in. Ends after classify's EOS once every
planned frame is complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator

import numpy as np

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import ModelInputError, ProtocolError
from vsr_stream.geometry import intersections
from vsr_stream.models.interp import bicubic_add
from vsr_stream.ops import array_module
from vsr_stream.ops.blend import Part, accumulate_tiles, stitch_cores
from vsr_stream.ops.reuse import core_rows, scaled_rows
from vsr_stream.ops.tensors import as_tensor, from_tensor
from vsr_stream.stage import Out, Stage
from vsr_stream.stages.classify import cut_windows


def feather_ramp_px(cfg: PipelineConfig) -> int:
    """Width of the blending ramp at tile edges in HR pixels: ``stitch.feather_px`` (default
    ``tiling.overlap_px``) LR pixels times the scale."""
    feather = cfg.stitch.feather_px if cfg.stitch.feather_px is not None else cfg.tiling.overlap_px
    return feather * cfg.scale


def hr_canvas(h: int, w: int, scale: int, xp: ModuleType = np) -> tuple[Any, Any]:
    """Empty accumulators of the HR frame of an ``h x w`` LR frame, in ``xp``'s memory: float32
    ``acc (h*s, w*s, 3)`` and ``wsum (h*s, w*s)`` for :func:`~vsr_stream.ops.blend.accumulate_tiles`."""
    return xp.zeros((h * scale, w * scale, 3), xp.float32), xp.zeros((h * scale, w * scale), xp.float32)


def previous_cores(previous: Any, geom: np.ndarray, scale: int) -> Part:
    """The reused tiles ``geom`` (int ``(n, 9)`` LR rows, n >= 1) as upscaled tiles cut from
    ``previous``, the last output frame: each tile's HR core region, its window set to its core.
    A part for :func:`~vsr_stream.ops.blend.accumulate_tiles` or
    :func:`~vsr_stream.ops.blend.stitch_cores`, on ``previous``'s device."""
    cores = core_rows(geom)
    return cores, cut_windows(previous, scaled_rows(cores, scale))


def fill_reused(acc: Any, wsum: Any, previous: Any, geom: np.ndarray, scale: int, ramp_px: int) -> None:
    """Blend the reused tiles ``geom`` (int ``(n, 9)`` LR rows, n >= 1) from ``previous``, the last
    output frame, into ``acc`` and ``wsum`` in place, with the feather weights
    :func:`~vsr_stream.ops.blend.accumulate_tiles` gives an upscaled tile (:func:`previous_cores`).
    ``previous``: ``(H, W, C)`` integer frame of ``acc``'s shape, on ``acc``'s device.
    Raises :class:`ModelInputError` if the shapes differ or a core lies outside the frame.
    """
    _check_previous(previous, tuple(acc.shape))
    rows, windows = previous_cores(previous, geom, scale)
    accumulate_tiles(acc, wsum, windows, rows, scale, ramp_px)


def corrected_previous(previous: Any, change: Any, scale: int) -> Any:
    """``previous`` (the last output frame, ``(H, W, C)`` uint8/uint16) plus the bicubic upscale of
    ``change`` (the LR frame's change since then, :func:`~vsr_stream.ops.reuse.lr_change`), rounded
    and clamped (:func:`~vsr_stream.models.interp.bicubic_add`): a new frame on ``previous``'s device,
    for the reused tiles to take their pixels from.

    A luma network with a bicubic skip upscales ``x`` as ``bicubic(x) + r(x)``, so a reused tile
    corrected so keeps its old ``r`` but follows the LR pixels exactly where the skip carries them.
    Raises :class:`ModelInputError` unless ``previous`` is ``change``'s frame upscaled.
    """
    if tuple(previous.shape) != (change.shape[0] * scale, change.shape[1] * scale, change.shape[2]):
        raise ModelInputError(f"reused tiles: the previous frame is {tuple(previous.shape)}, the LR change "
                              f"{tuple(change.shape)} at x{scale}")
    return from_tensor(bicubic_add(as_tensor(previous), as_tensor(change), scale), array_module(previous))


def reused_behind(previous: Any, reused: np.ndarray, upscaled: np.ndarray, scale: int,
                  shape: tuple[int, ...]) -> list[Part]:
    """The reused tiles ``stitch_cores`` must blend when it starts from ``previous``: those of ``reused``
    whose LR core touches a core of ``upscaled`` (both int ``(n, 9)`` rows), cut by :func:`previous_cores`.
    The others lie where only reused tiles do, and blending those gives ``previous`` back exactly.
    Raises :class:`ModelInputError` unless ``previous`` has the output's ``shape``."""
    _check_previous(previous, shape)
    near = reused[intersections(reused[:, 1:5], upscaled[:, 1:5])[1].any(axis=1)] if len(upscaled) else reused[:0]
    return [previous_cores(previous, near, scale)] if len(near) else []


def _check_previous(previous: Any, shape: tuple[int, ...]) -> None:
    if tuple(previous.shape) != tuple(shape):
        raise ModelInputError(f"reused tiles: the previous frame is {tuple(previous.shape)}, the output {tuple(shape)}")


@dataclass
class _Canvas:
    plan: m.Message
    remaining: int
    reused: np.ndarray  # LR rows of the tiles filled from the previous output frame, at release
    change: np.ndarray | None  # the LR change that corrects them (ReuseConfig.correct), or None
    shape: tuple[int, int, int]  # of the HR frame
    parts: list[Part]  # the upscaled tiles received so far: (LR rows, HR windows) per RESULT


class StitchStage(Stage):
    name = "stitch"

    def __init__(self, cfg: PipelineConfig) -> None:
        self.scale = cfg.scale
        self.ramp_px = feather_ramp_px(cfg)
        self.canvases: dict[int, _Canvas] = {}
        self.early: dict[int, list[m.Message]] = {}
        self.done: dict[int, m.Message | _Canvas] = {}  # complete; a canvas still needs its reused tiles
        self.keep_previous = cfg.reuse.enabled
        self.previous: np.ndarray | None = None  # the last released frame, while reuse is on
        self.next_index = 0
        self.plans = 0
        self.plans_expected: int | None = None
        self.released = 0
        self.busy_s = 0.0

    def process(self, msg: m.Message) -> Iterator[Out]:
        t0 = time.perf_counter()
        if msg.kind == m.PLAN:
            self._plan(msg)
        elif msg.kind == m.RESULT:
            self._result(msg)
        else:
            raise ProtocolError(f"stitch expects {m.PLAN} or {m.RESULT}, got {msg.kind}")
        released = list(self._release())
        self.busy_s += time.perf_counter() - t0
        yield from released

    def _plan(self, msg: m.Message) -> None:
        index = msg["index"]
        if index in self.canvases or index in self.done or index < self.next_index:
            raise ProtocolError(f"stitch: frame {index} planned twice")
        self.plans += 1
        canvas = _Canvas(msg, msg["n_tiles"], *_reuse_payload(msg), (msg["h"] * self.scale, msg["w"] * self.scale, 3), [])
        self.canvases[index] = canvas
        if canvas.remaining == 0:  # every tile reused
            self._complete(index)
        for early in self.early.pop(index, []):
            self._result(early)

    def _result(self, msg: m.Message) -> None:
        index = msg["index"]
        canvas = self.canvases.get(index)
        if canvas is None:
            if index < self.next_index or index in self.done:
                raise ProtocolError(f"stitch: tiles for frame {index}, which is already complete")
            self.early.setdefault(index, []).append(msg)
            return
        geom, hr = msg.arrays
        canvas.parts.append((geom, hr))
        canvas.remaining -= len(geom)
        if canvas.remaining < 0:
            raise ProtocolError(f"stitch: frame {index} received more tiles than its plan's {canvas.plan['n_tiles']}")
        if canvas.remaining == 0:
            self._complete(index)

    def _complete(self, index: int) -> None:
        """All of frame ``index``'s upscaled tiles are in: stitch now, or at release if it reuses tiles."""
        canvas = self.canvases.pop(index)
        self.done[index] = canvas if len(canvas.reused) else self._finished(canvas)

    def _release(self) -> Iterator[Out]:
        while self.next_index in self.done:
            frame = self.done.pop(self.next_index)
            if isinstance(frame, _Canvas):
                frame = self._fill_reused(frame)
            if self.keep_previous:
                self.previous = frame.arrays[0]
            self.next_index += 1
            self.released += 1
            yield "frames", frame

    def _fill_reused(self, canvas: _Canvas) -> m.Message:
        prev, plan = self.previous, canvas.plan
        if prev is None or prev.shape != canvas.shape or prev.dtype.name != plan["dtype"]:
            got = "no previous frame" if prev is None else f"a previous frame of {prev.shape} {prev.dtype}"
            raise ProtocolError(f"stitch: frame {plan['index']} reuses {len(canvas.reused)} tile(s) but there is {got}")
        if canvas.change is not None:
            prev = corrected_previous(prev, canvas.change, self.scale)
        upscaled = np.concatenate([rows for rows, _ in canvas.parts]) if canvas.parts else canvas.reused[:0]
        return self._finished(canvas, prev, reused_behind(prev, canvas.reused, upscaled, self.scale, canvas.shape))

    def _finished(self, canvas: _Canvas, base: np.ndarray | None = None, behind: list[Part] | None = None) -> m.Message:
        """The HR FRAME of a complete canvas (:func:`~vsr_stream.ops.blend.stitch_cores`)."""
        out = stitch_cores(canvas.parts, self.scale, self.ramp_px, canvas.shape, np.dtype(canvas.plan["dtype"]),
                           base=base, behind=behind or ())
        return m.Message(m.FRAME, _frame_header(canvas.plan), [out])

    def drained(self) -> bool:
        return not self.canvases and not self.early and not self.done

    def idle(self) -> bool:
        return False

    def flush(self) -> Iterator[Out]:
        yield "frames", m.eos(self.released, path="frames")

    def on_eos(self, msg: m.Message) -> None:
        self.plans_expected = msg["count"]
        if self.plans_expected != self.plans:
            raise ProtocolError(f"stitch: classify sent {self.plans_expected} plans but {self.plans} arrived")

    def stats(self) -> dict[str, Any]:
        return {"frames": self.released, "busy_s": self.busy_s}


def _reuse_payload(plan: m.Message) -> tuple[np.ndarray, np.ndarray | None]:
    """The PLAN's reused tile rows (``(r, 9)`` int32, r >= 1; none when it has no payload) and the
    LR change that corrects them (``(h, w, 3)`` signed, or None)."""
    if not plan.arrays:
        return np.zeros((0, len(m.GEOM_COLUMNS)), np.int32), None
    rows, *change = plan.arrays
    shape = (plan["h"], plan["w"], 3)
    if len(plan.arrays) > 2 or rows.ndim != 2 or rows.shape[1] != len(m.GEOM_COLUMNS) or not len(rows) \
            or (change and (tuple(change[0].shape) != shape or change[0].dtype.kind != "i")):
        raise ProtocolError(f"stitch: a plan's payload must be an (r >= 1, {len(m.GEOM_COLUMNS)}) array of reused "
                            f"tiles, then optionally their {shape} signed LR change, got "
                            f"{[(tuple(a.shape), a.dtype.name) for a in plan.arrays]}")
    return rows, change[0] if change else None


def _frame_header(plan: m.Message) -> dict[str, Any]:
    return {k: plan.header[k] for k in ("index", "pts", "time_base", "duration", "name")}
