"""Running a registered model on batches of uint8/uint16 RGB windows (the branch workers' core)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from vsr_stream.config import BranchConfig
from vsr_stream.errors import ConfigError, ModelInputError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PEAKS = {torch.uint8: 255.0, torch.uint16: 65535.0}  # full-scale value of each pixel dtype


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``, named as its tensors name theirs ('cpu', 'cuda:<index>');
    CPU (with one warning) where CUDA is not usable.

    Raises ConfigError for a name that is not a torch device, or a CUDA index this machine lacks.
    """
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"upscale.branches[].device: {name!r} is not a torch device") from e
    if device.type == "cpu":
        return torch.device("cpu")  # as torch names its tensors' device, so the two compare equal
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not usable here; running this branch on the CPU", name)
        return torch.device("cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    # 'cuda' means the current device: name it, so it compares equal to its tensors' device
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def build_branch_module(branch: BranchConfig, scale: int, allow_random: bool) -> torch.nn.Module:
    """The network a branch runs: its model and weights, inside a self-ensemble if configured."""
    from vsr_stream.models import build_model
    from vsr_stream.models.ensemble import with_self_ensemble

    module = build_model(branch.model, scale, weights=branch.weights, allow_random=allow_random)
    return with_self_ensemble(module) if branch.self_ensemble else module


class BranchModel:
    """One branch's network on its device: ``upscale(windows)`` maps (N, h, w, 3) → (N, h*s, w*s, 3).

    Input and output dtype are the same (uint8 on 0–255, or uint16 on 0–65535); the network
    sees floats in [0, 1] and its output is clamped to that range before rounding.
    :meth:`upscale` takes and returns host NumPy arrays; :meth:`upscale_tensor` does the same
    work on torch tensors already on ``device`` (the fused mode hands it device memory).
    """

    def __init__(self, branch: BranchConfig, scale: int, allow_random: bool) -> None:
        self.scale = scale
        self.device = resolve_device(branch.device)
        if branch.threads:
            torch.set_num_threads(branch.threads)
        module = build_branch_module(branch, scale, allow_random).to(self.device)
        self.dtype = PRECISIONS[branch.precision]
        # fp32 copy for retrying a half-precision batch that overflowed (None when already fp32)
        self.fallback = copy.deepcopy(module) if self.dtype != torch.float32 else None
        self.module = module.to(self.dtype)
        self.fp32_retries = 0
        self._pin = self.device.type == "cuda"

    @torch.inference_mode()
    def upscale(self, windows: np.ndarray) -> np.ndarray:
        """Host windows → host HR windows (see the class); raises ModelInputError for another shape or dtype."""
        if windows.ndim != 4 or windows.shape[3] != 3 or windows.dtype not in (np.uint8, np.uint16):
            raise ModelInputError(f"expected (N, h, w, 3) uint8/uint16 windows, got {windows.shape} {windows.dtype}")
        if not windows.flags.writeable:  # received zmq buffers are read-only; torch wants to own writable memory
            windows = windows.copy()
        host = torch.from_numpy(np.ascontiguousarray(windows))
        if self._pin:  # page-locked staging so the upload can overlap other work
            host = host.pin_memory()
        return self.upscale_tensor(host.to(self.device, non_blocking=self._pin)).cpu().numpy()

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, h, w, 3) uint8/uint16 tensor on ``device``, read only. Returns (N, h*s, w*s, 3)
        of ``x``'s dtype on ``device`` (channels-last strides, not necessarily contiguous).

        Raises ModelInputError for another shape, dtype or device.
        """
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype not in _PEAKS:
            raise ModelInputError(f"expected (N, h, w, 3) uint8/uint16 windows, got {tuple(x.shape)} {x.dtype}")
        if x.device != self.device:
            raise ModelInputError(f"windows are on {x.device}, this branch runs on {self.device}")
        peak = _PEAKS[x.dtype]
        y = self._forward(x.permute(0, 3, 1, 2).float().div_(peak)).clamp_(0.0, 1.0).mul_(peak).round_()
        return y.permute(0, 2, 3, 1).to(x.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on float32 ``x`` in the branch's precision; float32 out.

        A half-precision output holding NaN or Inf (overflow) is thrown away and the batch
        run again in fp32; ``fp32_retries`` counts those batches (warned once).
        """
        if self.fallback is None:
            return self.module(x)
        y = self.module(x.to(self.dtype)).float()
        if bool(torch.isfinite(y).all()):
            return y
        if not self.fp32_retries:
            log.warning("a %s batch gave NaN/Inf; running it in fp32 (further retries are counted, not logged)",
                        self.dtype)
        self.fp32_retries += 1
        return self.fallback(x)
