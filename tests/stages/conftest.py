"""Run classify → upscale → stitch inline (no sockets), every message through the wire codec."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig, deep_merge, load_config
from vsr_stream.stages.classify import ClassifyStage
from vsr_stream.stages.stitch import StitchStage
from vsr_stream.stages.upscale import UpscaleStage


def wire(msg: m.Message) -> m.Message:
    return m.decode([bytes(p) for p in m.encode(msg)])


def frame_msg(index: int, array: np.ndarray) -> m.Message:
    header = {"index": index, "pts": index * 1001, "time_base": [1, 24000], "duration": 1001, "name": None}
    return m.Message(m.FRAME, header, [array])


class InlinePipeline:
    """classify, one worker per class and stitch, driven by hand in a chosen delivery order."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.classify = ClassifyStage(cfg)
        self.workers = [UpscaleStage(cfg, k, 0) for k in range(cfg.n_classes)]
        for w in self.workers:
            w.setup()
        self.stitch = StitchStage(cfg)

    def run(self, frames: list[np.ndarray], reverse_results: bool = False) -> list[m.Message]:
        to_stitch, out = [], []
        for i, f in enumerate(frames):
            for port, msg in self.classify.process(wire(frame_msg(i, f))):
                if port == "plans":
                    to_stitch.append(wire(msg))
                else:
                    k = int(port.removeprefix("tiles"))
                    to_stitch += [wire(r) for _, r in self.workers[k].process(wire(msg))]
        for w in self.workers:
            to_stitch += [wire(r) for _, r in w.tick()]
        if reverse_results:
            to_stitch.reverse()
        for msg in to_stitch:
            out += [wire(f) for port, f in self.stitch.process(msg)]
        return out


@pytest.fixture
def make_cfg():
    def make(**sections) -> PipelineConfig:
        return load_config(deep_merge({"upscale": {"allow_random_weights": True}}, sections))
    return make


@pytest.fixture
def inline():
    return InlinePipeline


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def random_weights(tmp_path):
    """Save a randomly initialised model whose output spans the value range (the paper's init
    leaves FSRCNN's output near zero, which would make any comparison trivially equal)."""
    import torch

    from vsr_stream.models import build_model, save_weights

    def make(model: str, scale: int) -> str:
        torch.manual_seed(0)
        net = build_model(model, scale, allow_random=True)
        last = [p for p in net.parameters() if p.dim() == 4][-1]
        with torch.no_grad():
            last.mul_(300.0)
            [b for b in net.parameters() if b.dim() == 1][-1].fill_(0.5)
        path = tmp_path / f"{model}_x{scale}.safetensors"
        save_weights(net, path)
        return str(path)
    return make
