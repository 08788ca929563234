"""Upscale stage: one branch worker of class K.

Receives: TILES of class K on tiles<K> (round-robin among that class's workers).
Emits: one RESULT per TILES message (its geometry and the upscaled windows) on 'results'.
Connects: tiles<K> (PULL), stitch_in (PUSH). A service: no EOS; runs until the supervisor's STOP.
Batches tiles across messages and frames: runs when max_batch tiles wait or the oldest has
waited max_wait_ms. With ``merge_px``, touching tiles of one frame run as one larger window.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import ProtocolError
from vsr_stream.models.inference import BranchModel
from vsr_stream.ops.merge import upscale_merged
from vsr_stream.stage import Out, Stage


class UpscaleStage(Stage):
    eos_expected = None

    def __init__(self, cfg: PipelineConfig, cls: int, worker: int) -> None:
        self.cfg = cfg
        self.cls = cls
        self.branch = cfg.upscale.branches[cls]
        self.name = f"upscale{cls}.{worker}"
        self.model: BranchModel | None = None
        self.pending: list[m.Message] = []
        self.pending_tiles = 0
        self.first_at = 0.0
        self.tiles = 0
        self.batches = 0
        self.window_px = 0  # LR pixels through the network (windows, merged or not)
        self.busy_s = 0.0

    def setup(self) -> None:
        self.model = BranchModel(self.branch, self.cfg.scale, self.cfg.upscale.allow_random_weights)

    def process(self, msg: m.Message) -> Iterator[Out]:
        if msg.kind != m.TILES or msg.header.get("cls") != self.cls:
            raise ProtocolError(f"{self.name} expects {m.TILES} of class {self.cls}, got {msg.kind} {msg.header}")
        if not self.pending:
            self.first_at = time.monotonic()
        self.pending.append(msg)
        self.pending_tiles += len(msg.arrays[0])
        if self.pending_tiles >= self.branch.max_batch:
            yield from self.tick()

    def deadline_ms(self) -> float | None:
        if not self.pending:
            return None
        return self.branch.max_wait_ms - (time.monotonic() - self.first_at) * 1000

    def tick(self) -> Iterator[Out]:
        pending, self.pending, self.pending_tiles = self.pending, [], 0
        t0 = time.perf_counter()
        results = [self._upscaled(group) for group in _by_shape(pending)]
        self.busy_s += time.perf_counter() - t0
        for group, hr in results:
            yield from _split(group, hr)

    def _upscaled(self, group: list[m.Message]) -> tuple[list[m.Message], np.ndarray]:
        """The HR windows of ``group`` (messages whose windows share a shape), in message order.
        Tiles of one frame may merge into larger windows (``merge_px``); frames never mix."""
        frames: dict[int, list[m.Message]] = {}
        for msg in group:
            frames.setdefault(msg.header["index"], []).append(msg)
        if self.branch.merge_px <= 0 or len(frames) == 1:
            frames = {0: group}  # one call batches across frames; a merge sees one frame's tiles
        ordered = [msg for msgs in frames.values() for msg in msgs]
        hr = [self._frame_windows(msgs) for msgs in frames.values()]
        return ordered, np.concatenate(hr) if len(hr) > 1 else hr[0]

    def _frame_windows(self, msgs: list[m.Message]) -> np.ndarray:
        rows = np.concatenate([g.arrays[0] for g in msgs]) if len(msgs) > 1 else msgs[0].arrays[0]
        windows = np.concatenate([g.arrays[1] for g in msgs]) if len(msgs) > 1 else msgs[0].arrays[1]
        self.tiles += len(windows)
        return upscale_merged(self._run, windows, rows, self.branch.merge_px, self.branch.max_batch, self.cfg.scale)

    def _run(self, windows: np.ndarray) -> np.ndarray:
        assert self.model is not None
        self.batches += 1
        self.window_px += windows.shape[0] * windows.shape[1] * windows.shape[2]
        return self.model.upscale(windows)

    def stats(self) -> dict[str, Any]:
        model = self.model
        return {"cls": self.cls, "tiles": self.tiles, "batches": self.batches,
                "window_px": self.window_px, "busy_s": self.busy_s,
                "fp32_retries": model.fp32_retries if model else 0,
                "precision": model.precision if model else None, "layout": model.layout if model else None}


def _by_shape(msgs: list[m.Message]) -> list[list[m.Message]]:
    groups: dict[tuple, list[m.Message]] = {}
    for msg in msgs:
        windows = msg.arrays[1]
        groups.setdefault((windows.shape[1:], windows.dtype.name), []).append(msg)
    return list(groups.values())


def _split(group: list[m.Message], hr: np.ndarray) -> Iterator[Out]:
    start = 0
    for msg in group:
        n = len(msg.arrays[0])
        header = {"index": msg.header["index"], "cls": msg.header["cls"]}
        yield "results", m.Message(m.RESULT, header, [msg.arrays[0], hr[start:start + n]])
        start += n
