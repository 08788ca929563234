"""Classify stage: cuts each LR frame into overlapping tiles and routes them by TVAT class.

Receives: FRAME (LR) on classify_in.
Emits: PLAN (geometry, tile count) on 'plans' to stitch; TILES (windows of one class, in chunks
of that branch's max_batch) on 'tiles<k>' to the class-k worker pool.
Binds: classify_in (PULL), tiles<k> (PUSH fan-out). Connects: stitch_in. Queue policy: block.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import ProtocolError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.tvat import classify, tile_tvat, vsp
from vsr_stream.stage import Out, Stage


def cut_windows(frame: np.ndarray, geom: np.ndarray) -> np.ndarray:
    """(n, wh, ww, C) stack of the LR windows of ``geom`` rows (all windows of a frame share a shape)."""
    wh, ww = int(geom[0, 7]), int(geom[0, 8])
    out = np.empty((len(geom), wh, ww, frame.shape[2]), dtype=frame.dtype)
    for i, (wy0, wx0) in enumerate(geom[:, 5:7]):
        out[i] = frame[wy0:wy0 + wh, wx0:wx0 + ww]
    return out


class ClassifyStage(Stage):
    name = "classify"

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.frames = 0
        self.tiles_per_class = [0] * cfg.n_classes
        self.busy_s = 0.0
        self._geom_cache: dict[tuple[int, int], np.ndarray] = {}

    def process(self, msg: m.Message) -> Iterator[Out]:
        if msg.kind != m.FRAME:
            raise ProtocolError(f"classify expects {m.FRAME}, got {msg.kind}")
        t0 = time.perf_counter()
        frame = msg.arrays[0]
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ProtocolError(f"classify expects (H, W, 3) frames, got shape {frame.shape}")
        h, w = frame.shape[:2]
        geom = self._geometry(h, w)
        classes = self.classes(frame, geom)
        self.frames += 1
        header = {k: msg.header[k] for k in ("index", "pts", "time_base", "duration", "name")}
        plan = {**header, "h": h, "w": w, "n_tiles": len(geom), "dtype": frame.dtype.name}
        outs = [("plans", m.Message(m.PLAN, plan))]
        outs += list(self._tiles(frame, geom, classes, msg.header["index"]))
        self.busy_s += time.perf_counter() - t0
        yield from outs

    def classes(self, frame: np.ndarray, geom: np.ndarray) -> np.ndarray:
        """Class of every tile (int8); all zeros when there is a single class."""
        thresholds = self.cfg.classify.tvat_thresholds
        if not thresholds:
            return np.zeros(len(geom), dtype=np.int8)
        return classify(tile_tvat(vsp(frame), geom, self.cfg.classify.vsp_threshold), thresholds)

    def _geometry(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._geom_cache:
            t = self.cfg.tiling
            self._geom_cache[(h, w)] = plan_tiles(h, w, t.tile_px, t.overlap_px, t.context_px)
        return self._geom_cache[(h, w)]

    def _tiles(self, frame: np.ndarray, geom: np.ndarray, classes: np.ndarray, index: int) -> Iterator[Out]:
        for k, branch in enumerate(self.cfg.upscale.branches):
            rows = geom[classes == k]
            self.tiles_per_class[k] += len(rows)
            for start in range(0, len(rows), branch.max_batch):
                chunk = rows[start:start + branch.max_batch]
                yield f"tiles{k}", m.Message(m.TILES, {"index": index, "cls": k}, [chunk, cut_windows(frame, chunk)])

    def on_eos(self, msg: m.Message) -> None:
        if msg["count"] != self.frames:
            raise ProtocolError(f"classify: decode sent {msg['count']} frames, {self.frames} arrived")

    def flush(self) -> Iterator[Out]:
        yield "plans", m.eos(self.frames, path="plans")

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "tiles_per_class": self.tiles_per_class, "busy_s": self.busy_s}
