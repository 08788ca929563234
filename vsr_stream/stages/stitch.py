"""Stitch stage: blends upscaled tiles back into HR frames and releases them in order.

Receives: PLAN (from classify) and RESULT (from every branch worker) on stitch_in, in any order.
Emits: FRAME (HR) on 'frames' to encode, strictly by frame index, each exactly once.
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
from vsr_stream.errors import ProtocolError
from vsr_stream.ops.blend import accumulate_tiles, normalize
from vsr_stream.stage import Out, Stage


def feather_ramp_px(cfg: PipelineConfig) -> int:
    """Width of the blending ramp at tile edges in HR pixels: ``stitch.feather_px`` (default
    ``tiling.overlap_px``) LR pixels times the scale."""
    feather = cfg.stitch.feather_px if cfg.stitch.feather_px is not None else cfg.tiling.overlap_px
    return feather * cfg.scale


def hr_canvas(h: int, w: int, scale: int, xp: ModuleType = np) -> tuple[Any, Any]:
    """Empty accumulators of the HR frame of an ``h x w`` LR frame, in ``xp``'s memory: float32
    ``acc (h*s, w*s, 3)`` and ``wsum (h*s, w*s)`` for :func:`~vsr_stream.ops.blend.accumulate_tiles`."""
    return xp.zeros((h * scale, w * scale, 3), xp.float32), xp.zeros((h * scale, w * scale), xp.float32)


@dataclass
class _Canvas:
    plan: m.Message
    acc: np.ndarray
    wsum: np.ndarray
    remaining: int


class StitchStage(Stage):
    name = "stitch"

    def __init__(self, cfg: PipelineConfig) -> None:
        self.scale = cfg.scale
        self.ramp_px = feather_ramp_px(cfg)
        self.canvases: dict[int, _Canvas] = {}
        self.early: dict[int, list[m.Message]] = {}
        self.done: dict[int, m.Message] = {}
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
        self.busy_s += time.perf_counter() - t0
        yield from self._release()

    def _plan(self, msg: m.Message) -> None:
        index = msg["index"]
        if index in self.canvases or index in self.done or index < self.next_index:
            raise ProtocolError(f"stitch: frame {index} planned twice")
        self.plans += 1
        self.canvases[index] = _Canvas(msg, *hr_canvas(msg["h"], msg["w"], self.scale), msg["n_tiles"])
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
        accumulate_tiles(canvas.acc, canvas.wsum, hr, geom, self.scale, self.ramp_px)
        canvas.remaining -= len(geom)
        if canvas.remaining < 0:
            raise ProtocolError(f"stitch: frame {index} received more tiles than its plan's {canvas.plan['n_tiles']}")
        if canvas.remaining == 0:
            del self.canvases[index]
            dtype = np.dtype(canvas.plan["dtype"])
            self.done[index] = m.Message(m.FRAME, _frame_header(canvas.plan), [normalize(canvas.acc, canvas.wsum, dtype)])

    def _release(self) -> Iterator[Out]:
        while self.next_index in self.done:
            frame = self.done.pop(self.next_index)
            self.next_index += 1
            self.released += 1
            yield "frames", frame

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


def _frame_header(plan: m.Message) -> dict[str, Any]:
    return {k: plan.header[k] for k in ("index", "pts", "time_base", "duration", "name")}
