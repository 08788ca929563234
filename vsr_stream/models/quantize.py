"""int8 branches: post-training static quantization of a network's convolutions (torch.ao eager mode).

Every convolution becomes an int8 *island*, ``QuantStub → int8 conv (→ ReLU …) → DeQuantStub``:
inside an ``nn.Sequential`` a run of convolutions joined by ReLUs shares one island (conv+ReLU
fused), elsewhere each convolution gets its own. Everything between islands stays in float:
the bicubic skips, pixel shuffles, the Y/colour transform, residual additions and PReLU
(torch's quantized PReLU measured slower than dequantize → float PReLU → quantize: FSRCNN-PS-56-Y
x4 on 16 64x64 windows, 1.74x against 1.27x the fp32 time with fbgemm). So any family quantizes
without a copy of its forward pass.

Calibration runs at load on a fixed set of windows cut from :func:`synth.enlarged_picture`
(gradients, flat areas, a checkerboard and noise, drawn at half size and enlarged, so their
finest detail spans 2 px as a camera's would), with min/max observers: deterministic, well
under a second of work. Calibrating on the same pictures at full size (pixel-sized checkerboard
and noise, whose activations no natural frame reaches) set the ranges too wide: the x4 default
(`fsrcnn-ps-56-m9p4-y`) lost 0.208 / 0.127 dB on Set5 / Set14 through the pipeline, against
0.100 / 0.087 calibrated on the enlarged pictures (crops of 8 BSD200 photographs: 0.116 /
0.073; histogram observers on either: within 0.015 of min/max). Weights are per output channel
(symmetric int8), activations unsigned 8 bit (7 for fbgemm kernels on CPUs without VNNI).

Kernels: oneDNN where it can (measured faster here than fbgemm, which the "x86" engine picked:
FSRCNN-PS-56-Y x4, 320x180, 0.91x against 1.6x the fp32 channels-last time), x86/fbgemm for
transposed convolutions (oneDNN packs none with output padding). The packed weights carry their
kernels, so the process-wide quantized engine is only switched (under a lock) while converting.

Measured (AVX2 without VNNI, one thread; a VNNI or AMX CPU multiplies int8 several times faster):
FSRCNN-PS-56-Y x4 runs in 0.80x (16 64x64 windows) and 0.91x (a 320x180 frame) the fp32
channels-last time, EDSR-b6c32 in 0.90x and 0.85x; the default preset's Y-PSNR through the
pipeline drops from 30.83 to 30.68 dB on Set5 x4 and from 27.67 to 27.59 dB on Set14.

torch.ao's eager-mode quantization and quantized tensors are deprecated since torch 2.10 in favour
of torchao; they still work in the torch versions this package accepts.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.ao.quantization as tq
from torch import nn

from vsr_stream.errors import ConfigError

CALIBRATION_PICTURES = 2  # synth.enlarged_picture seeds CALIBRATION_SEED, CALIBRATION_SEED + 1
CALIBRATION_SIZE_PX = (96, 192)  # (h, w) of each picture
CALIBRATION_WINDOW_PX = 48
CALIBRATION_SEED = 0
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_LOCK = threading.Lock()


def calibration_windows() -> torch.Tensor:
    """The fixed calibration set: (N, 3, 48, 48) float32 RGB in [0, 1], the same on every call."""
    from vsr_stream.media.synth import enlarged_picture

    h, w = CALIBRATION_SIZE_PX
    k = CALIBRATION_WINDOW_PX
    pictures = [enlarged_picture(h, w, seed=CALIBRATION_SEED + i) for i in range(CALIBRATION_PICTURES)]
    windows = [p[y:y + k, x:x + k] for p in pictures for y in range(0, h, k) for x in range(0, w, k)]
    return torch.from_numpy(np.stack(windows)).permute(0, 3, 1, 2).float().div_(255.0)


def quantize_int8(module: nn.Module, batch: int = 16) -> nn.Module:
    """An int8 copy of the float32 CPU ``module`` (left unchanged), same contract: float NCHW in,
    float out. Calibrated on :func:`calibration_windows` in batches of ``batch``.

    Raises ConfigError if ``module`` has no convolution to quantize (e.g. bicubic) or this torch
    build has no x86 quantized kernels.
    """
    engines = torch.backends.quantized.supported_engines
    if "x86" not in engines and "fbgemm" not in engines:
        raise ConfigError(f"precision int8 needs torch's x86 quantized kernels; this build has {engines}")
    net = copy.deepcopy(module).eval()
    islands = _make_islands(net)
    if not islands:
        raise ConfigError(f"precision int8: {type(module).__name__} has no convolutions to quantize")
    for island in islands:
        island.qconfig = _qconfig(island)
    with _LOCK, warnings.catch_warnings():  # both the warning filters and the engine are process-wide
        # Expected here, so not passed on: eager mode's and quantized tensors' deprecation (torch >= 2.10
        # points at torchao), the reduce_range notice, and observers of branches calibration never ran
        # (MDSR's other scales).
        for message in ("torch.ao.quantization is deprecated", "Please use quant_min and quant_max",
                        "torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor",
                        "must run observer before calling calculate_qparams"):
            warnings.filterwarnings("ignore", message=message)
        tq.prepare(net, inplace=True)
        with torch.inference_mode():
            for x in calibration_windows().split(batch):
                net(x)
        for island in islands:
            _convert(island)
    return net


def fake_quantized(module: nn.Module) -> nn.Module:
    """A twin of the float CPU ``module`` for quantization-aware training: the same layers and
    parameters (shared, so training the twin trains ``module``, which stays a plain float network),
    arranged in the islands of :func:`quantize_int8`, each convolution's weights and each island's
    input and output passed through int8 fake quantization as :func:`quantize_int8` would round
    them. Activation ranges come from :func:`calibrate_fake_quant` (called here once).

    Raises ConfigError if ``module`` has no convolution to quantize.
    """
    leaves = {id(m): m for m in module.modules() if not list(m.children())}
    twin = copy.deepcopy(module, memo=dict(leaves))  # new containers around the same layers
    islands = _make_islands(twin)
    if not islands:
        raise ConfigError(f"quantize_aware: {type(module).__name__} has no convolutions to quantize")
    for island in islands:
        island.qconfig = _qat_qconfig(island)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        tq.prepare_qat(twin.train(), inplace=True)
    calibrate_fake_quant(twin)
    return twin


def calibrate_fake_quant(twin: nn.Module, batch: int = 16) -> None:
    """Set the activation ranges of a :func:`fake_quantized` twin as :func:`quantize_int8`
    calibrates them: min/max of the float network's activations on :func:`calibration_windows`."""
    fakes = [(name, m) for name, m in twin.named_modules() if isinstance(m, tq.FakeQuantize)]
    activations = [m for name, m in fakes if not name.endswith("weight_fake_quant")]
    for _, m in fakes:
        m.disable_fake_quant()
    for m in activations:
        m.activation_post_process.reset_min_max_vals()
        m.enable_observer()
    with torch.no_grad():
        for x in calibration_windows().split(batch):
            twin(x)
    for m in activations:
        m.disable_observer()
    for _, m in fakes:
        m.enable_fake_quant()


def _qat_qconfig(island: nn.Sequential) -> tq.QConfig:
    """:func:`_qconfig`'s rounding as fake quantization: activations per tensor at fixed calibrated
    ranges, weights at their current min/max (no running average), per output channel or per tensor
    as :func:`_qconfig` has them."""
    activation = tq.FakeQuantize.with_args(observer=tq.MinMaxObserver, quant_min=0,
                                           quant_max=127 if _reduce_range(island) else 255,
                                           dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weights = dict(quant_min=-128, quant_max=127, dtype=torch.qint8, averaging_constant=1.0)
    if _per_tensor_weights(island):
        weight = tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver,
                                           qscheme=torch.per_tensor_symmetric, **weights)
    else:
        weight = tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver,
                                           qscheme=torch.per_channel_symmetric, ch_axis=0, **weights)
    return tq.QConfig(activation=activation, weight=weight)


def _make_islands(module: nn.Module) -> list[nn.Sequential]:
    """Wrap ``module``'s convolutions into islands in place (see the module docstring); returns them."""
    islands: list[nn.Sequential] = []
    for name, child in list(module.named_children()):
        if isinstance(child, _CONVS):
            island = _island([child])
            setattr(module, name, island)
            islands.append(island)
        elif isinstance(child, nn.Sequential):
            layers = []
            for run in _runs(child):
                if isinstance(run[0], _CONVS):
                    layers.append(_island(run))
                    islands.append(layers[-1])
                else:
                    islands += _make_islands(run[0])
                    layers.append(run[0])
            setattr(module, name, nn.Sequential(*layers))
        else:
            islands += _make_islands(child)
    return islands


def _runs(seq: nn.Sequential) -> Iterator[list[nn.Module]]:
    """``seq``'s layers in groups: runs of convolutions joined by ReLUs, and single other layers."""
    run: list[nn.Module] = []
    for layer in seq:
        if isinstance(layer, _CONVS) or (run and isinstance(layer, nn.ReLU) and isinstance(run[-1], _CONVS)):
            run.append(layer)
            continue
        if run:
            yield run
            run = []
        yield [layer]
    if run:
        yield run


def _island(layers: list[nn.Module]) -> nn.Sequential:
    """QuantStub, ``layers`` (each Conv2d+ReLU pair fused), DeQuantStub."""
    island = nn.Sequential(tq.QuantStub(), *layers, tq.DeQuantStub())
    pairs = [[str(i), str(i + 1)] for i in range(1, len(layers) + 1)
             if isinstance(island[i], nn.Conv2d) and i + 1 <= len(layers) and isinstance(island[i + 1], nn.ReLU)]
    island.eval()
    return tq.fuse_modules(island, pairs) if pairs else island


def _engine(island: nn.Sequential) -> str:
    if "onednn" in torch.backends.quantized.supported_engines and not any(
            isinstance(m, nn.ConvTranspose2d) for m in island.modules()):
        return "onednn"
    return "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"


def _qconfig(island: nn.Sequential) -> tq.QConfig:
    weight = tq.default_weight_observer if _per_tensor_weights(island) else tq.default_per_channel_weight_observer
    return tq.QConfig(activation=tq.MinMaxObserver.with_args(reduce_range=_reduce_range(island)), weight=weight)


def _reduce_range(island: nn.Sequential) -> bool:
    # fbgemm needs 7-bit activations without VNNI (its 16-bit sums saturate); oneDNN does not, and
    # 8 bits cost FSRCNN-PS-56-Y x4 0.15 dB on Set5 against 0.60 dB with 7.
    vnni = bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())
    return _engine(island) != "onednn" and not vnni


def _per_tensor_weights(island: nn.Sequential) -> bool:
    # Per-channel weights everywhere but transposed convolutions (torch quantizes those per tensor).
    return any(isinstance(m, nn.ConvTranspose2d) for m in island.modules())


def _convert(island: nn.Sequential) -> None:
    """Swap the observed ``island`` for int8 modules packed for its engine (the caller holds _LOCK)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = _engine(island)
    try:
        tq.convert(island, inplace=True)
    finally:
        torch.backends.quantized.engine = previous
