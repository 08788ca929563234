"""Upscale stage: one branch worker of class K.

Receives: TILES of class K on tiles<K> (round-robin among that class's workers).
Emits: one RESULT per TILES message (its geometry and the upscaled windows) on 'results'.
Connects: tiles<K> (PULL), stitch_in (PUSH). A service: no EOS; runs until the supervisor's STOP.
Batches tiles across messages and frames: runs when max_batch tiles wait or the oldest has
waited max_wait_ms.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig
from vsr_stream.errors import ProtocolError
from vsr_stream.models.inference import BranchModel
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
        assert self.model is not None
        windows = np.concatenate([g.arrays[1] for g in group]) if len(group) > 1 else group[0].arrays[1]
        step = self.branch.max_batch
        hr = [self.model.upscale(windows[i:i + step]) for i in range(0, len(windows), step)]
        self.tiles += len(windows)
        self.batches += len(hr)
        return group, np.concatenate(hr) if len(hr) > 1 else hr[0]

    def stats(self) -> dict[str, Any]:
        model = self.model
        return {"cls": self.cls, "tiles": self.tiles, "batches": self.batches, "busy_s": self.busy_s,
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
