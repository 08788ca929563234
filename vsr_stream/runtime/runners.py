"""Where a stage runs: a thread sharing the supervisor's zmq context, or a spawned process.

The stage code is identical in both; only the context differs (pyzmq's devices do the same).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
from typing import Any, Protocol

import zmq

from vsr_stream.config import PipelineConfig
from vsr_stream.runtime.graph import StageSpec, make_stage
from vsr_stream.stage import run_stage


class StageHandle(Protocol):
    name: str

    def alive(self) -> bool: ...
    def join(self, timeout_s: float) -> None: ...
    def kill(self) -> None: ...
    def exit_reason(self) -> str: ...


class ThreadHandle:
    def __init__(self, spec: StageSpec, cfg: PipelineConfig, ctx: zmq.Context) -> None:
        self.name = spec.name
        self.thread = threading.Thread(target=run_stage, name=f"vsr-{spec.name}", daemon=True,
                                       args=(spec.name, lambda: make_stage(spec, cfg), spec.wiring, ctx))
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

    def kill(self) -> None:
        """Threads cannot be killed; a stuck daemon thread dies with the process."""

    def exit_reason(self) -> str:
        return "its thread ended without reporting"


class ProcessHandle:
    def __init__(self, spec: StageSpec, cfg: PipelineConfig) -> None:
        self.name = spec.name
        ctx = mp.get_context("spawn")
        level = logging.getLogger("vsr_stream").getEffectiveLevel()
        self.process = ctx.Process(target=_process_main, name=f"vsr-{spec.name}", daemon=True,
                                   args=(spec, cfg.model_dump(mode="json"), level))
        self.process.start()

    def alive(self) -> bool:
        return self.process.is_alive()

    def join(self, timeout_s: float) -> None:
        self.process.join(timeout_s)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def exit_reason(self) -> str:
        return f"its process exited with code {self.process.exitcode}"


def _process_main(spec: StageSpec, cfg_data: dict[str, Any], log_level: int) -> None:
    # Ctrl-C reaches the whole process group; the supervisor alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(levelname)s {spec.name}: %(message)s")
    cfg = PipelineConfig.model_validate(cfg_data)
    ctx = zmq.Context()
    try:
        run_stage(spec.name, lambda: make_stage(spec, cfg), spec.wiring, ctx)
    finally:
        ctx.term()


def start(spec: StageSpec, cfg: PipelineConfig, ctx: zmq.Context) -> StageHandle:
    """Start ``spec`` as a thread (inproc mode) or a process (ipc and tcp modes)."""
    if cfg.transport.mode == "inproc":
        return ThreadHandle(spec, cfg, ctx)
    return ProcessHandle(spec, cfg)
