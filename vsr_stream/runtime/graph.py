"""The one function that composes the pipeline: which stages run, and how they are wired.

decode ─► classify ─► upscale<k>.<i> ─► stitch ─► encode
   └───────────── passthrough packets ───────────────┘
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vsr_stream.config import PipelineConfig
from vsr_stream.stage import Stage, Wiring
from vsr_stream.transport import Endpoints


@dataclass(frozen=True)
class StageSpec:
    """What to run (``kind`` + JSON-able ``args``) and where its sockets go."""

    name: str
    kind: str
    wiring: Wiring
    args: dict[str, Any] = field(default_factory=dict)
    service: bool = False  # runs until STOP instead of ending on EOS


def build_graph(cfg: PipelineConfig, source: str, output: str, ep: Endpoints) -> list[StageSpec]:
    """Every stage of one run with its wiring; branch workers per ``cfg.upscale.branches``."""
    t = cfg.transport
    wire = lambda: Wiring(control=ep.control, hwm=t.queue_msgs, stall_timeout_ms=t.stall_timeout_ms)  # noqa: E731
    specs = [
        _spec("decode", "decode", wire(), outputs={"frames": (ep.classify_in, False),
                                                   "packets": (ep.encode_in, False)}, args={"source": source}),
        _spec("classify", "classify", wire(), inputs=[(ep.classify_in, True)],
              outputs={"plans": (ep.stitch_in, False),
                       **{f"tiles{k}": (addr, True) for k, addr in enumerate(ep.tiles)}}),
    ]
    for k, branch in enumerate(cfg.upscale.branches):
        specs += [worker_spec(wire(), ep.tiles[k], ep.stitch_in, k, i) for i in range(branch.workers)]
    specs += [
        _spec("stitch", "stitch", wire(), inputs=[(ep.stitch_in, True)], outputs={"frames": (ep.encode_in, False)}),
        _spec("encode", "encode", wire(), inputs=[(ep.encode_in, True)], args={"output": output}),
    ]
    return specs


def worker_spec(wiring: Wiring, tiles: str, results: str, cls: int, worker: int | str) -> StageSpec:
    """A branch worker of class ``cls`` that connects to ``tiles`` and sends to ``results``."""
    return _spec(f"upscale{cls}.{worker}", "upscale", wiring, inputs=[(tiles, False)],
                 outputs={"results": (results, False)}, args={"cls": cls, "worker": worker}, service=True)


def _spec(name: str, kind: str, wiring: Wiring, *, inputs: list | None = None, outputs: dict | None = None,
          args: dict | None = None, service: bool = False) -> StageSpec:
    wiring.inputs.extend(inputs or [])
    wiring.outputs.update(outputs or {})
    return StageSpec(name, kind, wiring, args or {}, service)


def make_stage(spec: StageSpec, cfg: PipelineConfig) -> Stage:
    """Construct the stage object for ``spec`` (imports lazily: a process builds only its own)."""
    if spec.kind == "decode":
        from vsr_stream.stages.decode import DecodeStage
        return DecodeStage(cfg, spec.args["source"])
    if spec.kind == "classify":
        from vsr_stream.stages.classify import ClassifyStage
        return ClassifyStage(cfg)
    if spec.kind == "upscale":
        from vsr_stream.stages.upscale import UpscaleStage
        return UpscaleStage(cfg, spec.args["cls"], spec.args["worker"])
    if spec.kind == "stitch":
        from vsr_stream.stages.stitch import StitchStage
        return StitchStage(cfg)
    if spec.kind == "encode":
        from vsr_stream.stages.encode import EncodeStage
        return EncodeStage(cfg, spec.args["output"])
    raise ValueError(f"unknown stage kind {spec.kind!r}")
