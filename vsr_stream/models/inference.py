"""Running a registered model on batches of uint8/uint16 RGB windows (the branch workers' core).

A branch's numerics are settled once, at setup: the precision ("auto" resolves to bf16 or fp32
from the hardware and the model's card, see :func:`choose_auto_precision`) and the memory layout
of its convolutions (see :func:`choose_auto_layout`). Both are logged and kept on the
:class:`BranchModel` (``precision``, ``layout``) for reports.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vsr_stream.config import BranchConfig
from vsr_stream.cpuinfo import this_cpu_flags
from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.models.dtypes import learned_layers_to
from vsr_stream.models.interp import bicubic_nhwc
from vsr_stream.ops.tensors import as_tensor

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}
HALF_PRECISIONS = ("fp16", "bf16")
MAX_BF16_COST_DB = 0.02  # "auto" takes bf16 only if the card's |bf16 - fp32| PSNR is at most this on every set
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of bf16 arithmetic units
_PEAKS = {torch.uint8: 255.0, torch.uint16: 65535.0}  # full-scale value of each pixel dtype
_FREEZE_LOCK = threading.Lock()


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


# ---------------------------------------------------------------- model cards (machine-readable part)

@dataclass(frozen=True)
class CardNumbers:
    """The numbers of a model card, read from the sidecar ``<stem>.json`` beside ``<stem>.safetensors``.

    ``sha256`` is the weights file's; ``*_psnr_db`` are whole-image Y-PSNR per validation set
    ({"Set5": dB, ...}); ``bf16_cost_db`` is bf16 minus fp32 PSNR per set (negative: bf16 is worse).
    """

    model: str
    scale: int
    sha256: str
    fp32_psnr_db: dict[str, float]
    bf16_psnr_db: dict[str, float]
    bf16_cost_db: dict[str, float]

    def write(self, path: Path) -> None:
        """Write the sidecar JSON to ``path`` (OSError if it cannot be written)."""
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> CardNumbers:
        """The sidecar at ``path``. Raises ConfigError naming the file if it is unreadable or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            card = cls(model=str(data["model"]), scale=int(data["scale"]), sha256=str(data["sha256"]),
                       **{k: {str(s): float(v) for s, v in data[k].items()}
                          for k in ("fp32_psnr_db", "bf16_psnr_db", "bf16_cost_db")})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise ConfigError(f"model card sidecar {path} is unreadable: {type(e).__name__}: {e}") from e
        return card


def card_sidecar_path(weights: Path) -> Path:
    """Where the card numbers of the weights file ``weights`` live: the same stem, ``.json``."""
    return weights.with_suffix(".json")


def branch_weights_path(branch: BranchConfig, scale: int) -> Path | None:
    """The weights file the branch's model loads at ``scale`` (:func:`registry.weights_file`),
    or None for a model without weights or a learned one left at random initialisation."""
    from vsr_stream.models.registry import weights_file

    return weights_file(branch.model, scale, branch.weights)


def branch_card(branch: BranchConfig, scale: int) -> tuple[CardNumbers | None, str]:
    """(the card of the weights the branch runs, "") or (None, why there is none).

    A card counts only if its sidecar names the branch's model and scale and the weights' sha256.
    """
    weights = branch_weights_path(branch, scale)
    if weights is None:
        return None, "no model card: no trained weights"
    sidecar = card_sidecar_path(weights)
    if not sidecar.is_file():
        return None, f"no model card beside {weights.name}"
    try:
        card = CardNumbers.read(sidecar)
    except ConfigError as e:
        return None, str(e)
    if (card.model, card.scale) != (branch.model, scale):
        return None, f"{sidecar.name} is the card of {card.model} x{card.scale}"
    if card.sha256 != hashlib.sha256(weights.read_bytes()).hexdigest():
        return None, f"{sidecar.name} does not match {weights.name} (sha256 differs)"
    return card, ""


# ---------------------------------------------------------------- precision

def cpu_has_native_bf16(capability: str, flags: frozenset[str]) -> bool:
    """True if torch's CPU capability (``torch.backends.cpu.get_cpu_capability()``) names bf16 or AMX
    units, or the CPU flags include avx512_bf16 / amx_bf16. Without them bf16 matmuls are emulated
    (measured ~1.4 GFLOP/s against ~60 fp32 on an AVX2 core)."""
    upper = capability.upper()
    return "BF16" in upper or "AMX" in upper or bool(_NATIVE_BF16_FLAGS & flags)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bf16 natively, what its hardware reports: a name for the log line)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False), torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return False, device.type
    capability = torch.backends.cpu.get_cpu_capability()  # without /proc/cpuinfo, this alone decides
    return cpu_has_native_bf16(capability, this_cpu_flags()), capability


@dataclass(frozen=True)
class PrecisionChoice:
    """What "auto" resolved to ("fp32" or "bf16") and why, in words for the log."""

    precision: str
    reason: str


def choose_auto_precision(device_type: str, native: bool, hardware: str, card: CardNumbers | None,
                          no_card: str = "no model card") -> PrecisionChoice:
    """The "auto" precision, a pure function: bf16 only if the device (``device_type`` 'cpu'/'cuda')
    computes it natively (``native``; ``hardware`` names what it has) and ``card`` records a bf16
    cost of at most :data:`MAX_BF16_COST_DB` (absolute) on every validation set; fp32 otherwise,
    with ``no_card`` as the reason when ``card`` is None.

    On the CPU bf16 pays for every registered network since the FSRCNN bodies compute their PReLUs
    in float32 (:class:`~vsr_stream.models.dtypes.PReLU`; torch's bf16 PReLU kernel had made the thin
    FSRCNNs 1.2-1.5x slower in bf16, so "auto" used to keep fp32 for networks with most of their
    work in layers under 32 channels). AVX-512 BF16 EPYC, torch 2.13, ``BranchModel.upscale`` of one
    320x180 frame (194x334 with context), median of 11 interleaved calls, bf16 time / fp32 time,
    at 1 thread (a fused run's network pool) / 2 threads: FSRCNN-PS-56-M9P4-Y 0.71 / 0.78,
    FSRCNN-PS-56-Y 0.71 / 0.76, FSRCNN-PS-36-T1-Y 0.84 / 0.92, FSRCNN-PS-16-Y 0.87 / 0.91,
    FSRCNN-PS-56-M12-Y (x3) 0.71 / 0.79, EDSR-B6C32 0.49 / 0.51.
    """
    if not native:
        where = "CPU" if device_type == "cpu" else "device"
        return PrecisionChoice("fp32", f"this {where} has no native bf16: {hardware}")
    if card is None:
        return PrecisionChoice("fp32", no_card)
    if not card.bf16_cost_db:
        return PrecisionChoice("fp32", "the model card records no bf16 cost")
    worst = max(card.bf16_cost_db, key=lambda s: abs(card.bf16_cost_db[s]))
    cost = card.bf16_cost_db[worst]
    if abs(cost) > MAX_BF16_COST_DB:
        return PrecisionChoice("fp32", f"bf16 costs {cost:+.3f} dB on {worst}, over the {MAX_BF16_COST_DB} dB limit")
    return PrecisionChoice("bf16", f"native bf16 ({hardware}), bf16 cost at most {abs(cost):.3f} dB on every set")


def resolve_precision(branch: BranchConfig, scale: int, device: torch.device) -> str:
    """The branch's precision with "auto" resolved (logged at INFO with its reason); others as given."""
    if branch.precision != "auto":
        return branch.precision
    native, hardware = native_bf16(device)
    card, no_card = branch_card(branch, scale) if native else (None, "")
    choice = choose_auto_precision(device.type, native, hardware, card, no_card)
    log.info("%s x%d: %s (%s)", branch.model, scale, choice.precision, choice.reason)
    return choice.precision


# ---------------------------------------------------------------- memory layout

def choose_auto_layout(family: str, device_type: str, precision: str) -> str:
    """The "auto" layout of a model ``family`` on ``device_type`` at ``precision`` (a pure function).

    "channels_last" stores the convolution weights NHWC, so oneDNN runs every convolution in
    NHWC; the network's input stays NCHW either way (:meth:`BranchModel.upscale_tensor`),
    because torch's bicubic kernel (the skips and the Y models' chroma) is ~2x slower on
    channels-last tensors (2 channels, 320x180, x4: 40 vs 18 ms). Measured on one AVX2 core
    (EPYC, torch 2.13, x4, fp32, thread CPU time, 11 interleaved runs, two sessions on a loaded
    machine): channels_last time / contiguous time, of the fastest runs (of the medians):

        ============== ======================== ========================
        model          16 windows of 64x64      one 320x180 frame
        ============== ======================== ========================
        fsrcnn-ps-56-y 0.91, 0.88 (0.80)        0.77, 0.91 (0.74)
        fsrcnn-ps-16-y 0.85, 0.89 (0.87)        0.87, 0.93 (0.90)
        fsrcnn-56      0.79, 0.84 (0.85)        0.77, 0.85 (0.85)
        edsr-b6c32     0.67, 0.68 (0.74)        0.68, 0.69 (0.65)
        ============== ======================== ========================

    A channels-last input as well (model and input both ``.to(memory_format=torch.channels_last)``)
    measured within the noise of this (0.84-0.90 of contiguous on the luma models' frames) while
    its bicubic steps are the slow ones; a channels-last input into NCHW weights (what the
    permuted NHWC windows gave before) measured 0.99-1.06 on the luma models. So on the CPU:
    channels_last for every convolutional family; contiguous for interpolation (nothing to
    convert). CUDA (not measured here): channels_last in half precision (tensor-core
    convolutions are NHWC), contiguous in fp32.
    """
    if family == "interpolation":
        return "contiguous"
    if device_type == "cpu":
        return "channels_last"
    return "channels_last" if precision in HALF_PRECISIONS else "contiguous"


def to_layout(module: torch.nn.Module, layout: str) -> torch.nn.Module:
    """``module`` with its 4-D weights in ``layout`` ("channels_last" or "contiguous"), in place."""
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return module.to(memory_format=memory_format)


def choose_cpu_optimize(family: str, capability: str) -> bool:
    """Whether a frozen fp32 network of model ``family`` also goes through
    ``torch.jit.optimize_for_inference`` (oneDNN's blocked layouts and prepacked weights) on a CPU
    whose torch capability (``torch.backends.cpu.get_cpu_capability()``) is ``capability`` (a pure function).

    Measured with ``BranchModel.upscale``, the frozen trace with and without it, alternating in one process,
    median of 20-40 calls (ms):

    - AVX2 EPYC without AVX-512 (2026-11-28), FSRCNN family:
      - ``fsrcnn-ps-56-m9p4-y`` x4 on a 320x180 frame: 111 / 117 → 98 / 103 on one thread, 58.6 / 65.4
        → 53.5 / 57.3 on two;
      - the same on 16 windows of 88x88: 250 → 232 on one thread, 144 → 128 on two;
      - ``fsrcnn-ps-56-y``: 78.9 → 70.1 on one thread, 52.6 → 45.8 on two.
    - The same CPU, ``edsr-b6c32`` with self-ensemble on a 160x90 frame (two threads): 765 → 984, slower.
    - The AVX-512 BF16 EPYC (2026-11-27), every family slower: ``fsrcnn-ps-56-m9p4-y`` 43.1 → 72.1,
      ``fsrcnn-ps-56-m12-y`` x3 38.1 → 57.7, ``edsr-b6c32`` 341 → 571 (docs/performance.md).

    So: the FSRCNN family on a CPU that torch runs at AVX2, and nothing else (other capabilities unmeasured).
    The outputs differ from the plain trace's in 2e-5 of values, by 1.
    """
    return family == "fsrcnn" and capability.upper() == "AVX2"


def freeze_for_cpu(module: torch.nn.Module, optimize: bool = False) -> torch.jit.ScriptModule:
    """``module`` traced with TorchScript and frozen for CPU inference (parameters folded in as
    constants): the same outputs as eager, and as fast or faster; with ``optimize`` also through
    ``torch.jit.optimize_for_inference`` (where that pays: :func:`choose_cpu_optimize`).

    Measured on the AVX-512 BF16 EPYC (torch 2.13, 2 threads, ``BranchModel.upscale``, one 320x180
    frame / 16 88x88 windows, x4, median of 11 interleaved runs), ms, eager → frozen:
    FSRCNN-PS-56-M9P4-Y 43.0 → 43.1 / 101.2 → 105.7, FSRCNN-PS-56-M12-Y (x3) 44.3 → 38.1 / 91.0 →
    78.5, EDSR-B6C32 360.3 → 341.3 / 778.2 → 764.1. ``torch.jit.optimize_for_inference`` on top
    made the same runs slower on this one: 72.1 / 112.5, 57.7 / 140.2 and 570.5 / 1570.9 ms.

    The registered networks are plain convolution stacks without shape-dependent control flow,
    so one trace on a small float32 input serves every window size (tested against eager).
    """
    example = torch.rand(1, 3, 24, 24)
    # catch_warnings swaps the process-wide filter list: branches set up in threads take turns, or
    # one thread's exit restores the filters while another is still tracing
    with _FREEZE_LOCK, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes read as constants: the channels
        # TorchScript is deprecated for torch.compile, which needs a compiler at run time and
        # recompiles per window shape; TorchScript still works throughout torch < 2.15
        warnings.simplefilter("ignore", DeprecationWarning)
        frozen = torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False))
        return torch.jit.optimize_for_inference(frozen) if optimize else frozen


# ---------------------------------------------------------------- the branch

def build_branch_module(branch: BranchConfig, scale: int, allow_random: bool) -> torch.nn.Module:
    """The network a branch runs: its model and weights, inside a self-ensemble if configured."""
    from vsr_stream.models import build_model
    from vsr_stream.models.ensemble import with_self_ensemble

    module = build_model(branch.model, scale, weights=branch.weights, allow_random=allow_random)
    return with_self_ensemble(module) if branch.self_ensemble else module


class _Residual(torch.nn.Module):
    """``model.residual_phases`` as a forward pass, to be traced, frozen or quantized like any network."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.residual_phases(x)


class BranchModel:
    """One branch's network on its device: ``upscale(windows)`` maps (N, h, w, 3) → (N, h*s, w*s, 3).

    Input and output dtype are the same (uint8 on 0–255, or uint16 on 0–65535); the network
    sees floats in [0, 1] and its output is clamped to that range before rounding.
    :meth:`upscale` takes and returns host NumPy arrays; :meth:`upscale_tensor` does the same
    work on torch tensors already on ``device`` (the fused mode hands it device memory).
    ``precision`` ("fp32", "fp16", "bf16", "int8") and ``layout`` ("channels_last",
    "contiguous") are the resolved settings; ``family`` is the model's (registry) family.

    On the CPU, constructing one also sets this process's heap to keep the network's freed
    activations resident (:func:`~vsr_stream.runtime.memory.keep_heap_resident`): without it
    glibc returns them to the system after most calls and the next call faults them back in.

    Raises ConfigError at construction for int8 on a model without convolutions.
    """

    def __init__(self, branch: BranchConfig, scale: int, allow_random: bool) -> None:
        from vsr_stream.models import get
        from vsr_stream.runtime.memory import keep_heap_resident

        self.scale = scale
        self.device = resolve_device(branch.device)
        if self.device.type == "cpu":
            keep_heap_resident()
        if branch.threads:
            torch.set_num_threads(branch.threads)
        self.precision = resolve_precision(branch, scale, self.device)
        self.family = get(branch.model).family
        self.layout = (choose_auto_layout(self.family, self.device.type, self.precision)
                       if branch.layout == "auto" else branch.layout)
        module = build_branch_module(branch, scale, allow_random)
        # A bicubic upscale plus a learned residual (interp.Bicubic.phase_output): the network runs
        # only the residual, and the bicubic part is computed on the channels-last frame, in the pass
        # that adds the residual and clamps, rounds and converts the sum (see _skip_upscale).
        # Bicubic alone has no network at all.
        self.phased = bool(getattr(module, "phase_output", False))
        if self.phased:
            module = _Residual(module) if hasattr(module, "residual_phases") else None
        self.dtype = PRECISIONS[self.precision]  # of the network's float input
        self.module, self.fallback, self.frozen = None, None, False
        if module is None:
            if self.precision == "int8":
                raise ConfigError(f"precision int8: {branch.model} has no convolutions to quantize")
        else:
            self._set_network(module, branch, scale)
        self.fp32_retries = 0
        self._pin = self.device.type == "cuda"

    def _set_network(self, module: torch.nn.Module, branch: BranchConfig, scale: int) -> None:
        """``module`` in the branch's layout, precision and device, frozen where that pays, as
        :attr:`module` (and :attr:`fallback`, its fp32 copy for retrying an fp16 batch
        that overflowed)."""
        module = to_layout(module, self.layout)
        if self.precision == "int8":
            from vsr_stream.models.quantize import quantize_int8

            module = quantize_int8(module)
        module = module.to(self.device)
        # fp16 overflows at 65,504; bf16 has float32's exponent range, so it overflows only where float32 would
        self.fallback = copy.deepcopy(module) if self.precision == "fp16" else None
        self.module = learned_layers_to(module, self.dtype) if self.precision in HALF_PRECISIONS else module
        if branch.freeze and self.device.type == "cpu" and self.precision == "fp32":
            optimize = choose_cpu_optimize(self.family, torch.backends.cpu.get_cpu_capability())
            try:
                self.module, self.frozen = freeze_for_cpu(self.module, optimize), True
            except Exception as e:  # an optimisation only: the eager network runs, and fails there if broken
                log.warning("%s x%d: cannot be frozen for inference (%s: %s); running it eagerly",
                            branch.model, scale, type(e).__name__, e)

    @torch.inference_mode()
    def upscale(self, windows: np.ndarray) -> np.ndarray:
        """Host windows → host HR windows (see the class); raises ModelInputError for another shape or dtype."""
        if windows.ndim != 4 or windows.shape[3] != 3 or windows.dtype not in (np.uint8, np.uint16):
            raise ModelInputError(f"expected (N, h, w, 3) uint8/uint16 windows, got {windows.shape} {windows.dtype}")
        host = as_tensor(np.ascontiguousarray(windows))  # received zmq buffers are read-only: copied once
        if self._pin:  # page-locked staging so the upload can overlap other work
            host = host.pin_memory()
        return self.upscale_tensor(host.to(self.device, non_blocking=self._pin)).cpu().numpy()

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, h, w, 3) uint8/uint16 tensor on ``device``, read only. Returns a contiguous
        (N, h*s, w*s, 3) tensor of ``x``'s dtype on ``device``.

        Raises ModelInputError for another shape, dtype or device.
        """
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype not in _PEAKS:
            raise ModelInputError(f"expected (N, h, w, 3) uint8/uint16 windows, got {tuple(x.shape)} {x.dtype}")
        if x.device != self.device:
            raise ModelInputError(f"windows are on {x.device}, this branch runs on {self.device}")
        peak = _PEAKS[x.dtype]
        if self.phased:
            return self._skip_upscale(x, peak)
        y = self._forward(self._planar(x, peak)).clamp_(0.0, 1.0).mul_(peak).round_()
        return y.permute(0, 2, 3, 1).to(x.dtype, memory_format=torch.contiguous_format)

    @staticmethod
    def _planar(x: torch.Tensor, peak: float) -> torch.Tensor:
        """The network's input: NCHW float32 on [0, 1] whatever the layout (see choose_auto_layout)."""
        return x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(peak)

    def _skip_upscale(self, x: torch.Tensor, peak: float) -> torch.Tensor:
        """A phased model's output for NHWC ``x``: ``bicubic(x) + residual``, rounded, clamped and in
        ``x``'s dtype. Against the model's own phases and their interleave (the bicubic skip as a
        dense 5x5 convolution on 3 input channels, then a sum, a clamp, a rounding and an interleave,
        each over the HR frame), a 320x180 x4 frame on two cores took 0.4-1.6 ms less through a
        network and 3.3-3.8 ms instead of 5.2-6.0 through bicubic alone (docs/performance.md).
        The residual is summed inside the bicubic's horizontal pass (:func:`bicubic_nhwc`)."""
        residual = None if self.module is None else self._forward(self._planar(x, peak))  # (N, s*s, H, W)
        # +0.5 before the taps (each phase's taps sum to 1) makes the final truncation round to nearest
        hr = bicubic_nhwc(x.to(torch.float32).add_(0.5), self.scale, residual, alpha=peak)
        return hr.clamp_(0.0, peak + 0.5).to(x.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on float32 NCHW ``x`` in the branch's precision; float32 out.

        An fp16 output holding NaN or Inf (overflow) is thrown away and the batch run again in
        fp32; ``fp32_retries`` counts those batches (warned once).
        """
        y = self.module(x).float()  # float32 in: learned layers in self.dtype, skip and sum in float32
        if self.fallback is None or bool(torch.isfinite(y).all()):
            return y
        if not self.fp32_retries:
            log.warning("a %s batch gave NaN/Inf; running it in fp32 (further retries are counted, not logged)",
                        self.dtype)
        self.fp32_retries += 1
        return self.fallback(x)
