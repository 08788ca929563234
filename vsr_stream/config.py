"""Pipeline configuration: one pydantic model, sections keyed by stage.

Priority, highest first: explicit arguments > environment (``VSR_STREAM_<SECTION>__<FIELD>``)
> config file (a path or a preset name from ``configs/``) > the defaults below.
Every invalid value fails here, before any frame is read, with its field path in the message.

A config file may hold per-scale tables ``[x2]``, ``[x3]``, ``[x4]``: the one matching the
final scale is merged over the file's other keys (so one preset can carry trained branches
and class thresholds for every scale); the environment and explicit arguments still win.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vsr_stream.errors import ConfigError
from vsr_stream.resources import preset_path

ENV_PREFIX = "VSR_STREAM_"
DEFAULT_PRESET = "default"  # configs/default.toml: the shipped trained branches


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeConfig(_Section):
    threads: int = Field(0, ge=0, description="Decoder threads; 0 lets FFmpeg choose.")
    strict: bool = Field(
        True,
        description="Treat any bitstream damage the decoder detects as an error "
        "(FFmpeg err_detect=explode) instead of concealing it.",
    )
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames (None: the whole input).")
    max_duration_s: float | None = Field(
        None, gt=0, description="Stop once the input's own timeline has advanced this far, in seconds (None: no limit).")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP inputs: carry the media over TCP "
                                                  "(interleaved, no loss) or UDP.")
    open_timeout_ms: int = Field(5_000, ge=100, description="Network inputs: longest wait to connect and read "
                                 "the stream's description.")
    read_timeout_ms: int = Field(5_000, ge=100, description="Network inputs: longest wait for data once connected; "
                                 "a longer silence counts as a stall and triggers a reconnect.")
    reconnect_delay_ms: int = Field(500, ge=0, description="Live inputs: first wait before reconnecting; doubles "
                                    "per failed attempt (with jitter) up to reconnect_delay_max_ms.")
    reconnect_delay_max_ms: int = Field(10_000, ge=0, description="Live inputs: cap of the reconnect backoff.")
    give_up_after_ms: int = Field(120_000, ge=0, description="Live inputs: fail (SourceError) when no frame has "
                                  "arrived for this long despite reconnecting; 0 never reconnects.")
    wait_for_stream_ms: int = Field(0, ge=0, description="Live inputs: how long the first open keeps trying, with the "
                                    "reconnect backoff, while the stream is not there yet (a camera still booting, a "
                                    "server answering 503); 0 fails at once, so a wrong URL is reported immediately. "
                                    "A refused login (401/403) always fails at once.")
    live_policy: Literal["drop_oldest", "block"] = Field(
        "drop_oldest", description="Live inputs when upscaling is slower than the stream: drop_oldest drops frames "
        "at ingest (oldest first, each counted) to keep latency_budget_ms; block drops nothing and falls behind.")
    latency_budget_ms: int = Field(1_000, ge=1, description="Live inputs with drop_oldest: longest time a frame "
                                   "may wait at ingest before it is dropped.")


class TilingConfig(_Section):
    tile_px: int = Field(32, ge=4, description="Side of a square LR tile, in pixels (ClassSR: 32).")
    overlap_px: int = Field(
        4, ge=0, description="Overlap of neighbouring LR tiles, in pixels; stride = tile_px - overlap_px."
    )
    context_px: int = Field(
        8,
        ge=0,
        description="Extra LR pixels of context cut around each tile and discarded after upscaling, "
        "so the network sees what it would see on the whole frame. Seamlessness needs "
        "context_px >= the network's receptive-field radius. Each branch cuts only as much as its own "
        "network's radius needs (at most this), so a shallow branch's windows are smaller.",
    )

    @model_validator(mode="after")
    def _stride_positive(self) -> "TilingConfig":
        if self.overlap_px >= self.tile_px:
            raise ValueError(f"overlap_px ({self.overlap_px}) must be smaller than tile_px ({self.tile_px})")
        return self


class ClassifyConfig(_Section):
    vsp_threshold: int = Field(
        0, ge=0, description="VSP values at or above this count towards TVAT (0-255 pixel scale, integer)."
    )
    tvat_thresholds: list[float] = Field(
        default_factory=list,
        description="Ascending TVAT boundaries between classes; a tile with TVAT >= t_k is in class k+1 "
        "or above. Length must be one less than the number of branches.",
    )
    classifier: str | None = Field(
        None, description="Route by a learned ClassSR tile classifier instead of TVAT: its weights file "
        "(`vsr-stream train-classifier`), or '@name' for a shipped one. Its class count must equal the "
        "number of branches; tvat_thresholds must then be empty.",
    )
    classifier_bias: list[float] = Field(
        default_factory=list,
        description="Added to the learned classifier's logits before the argmax, one value per class "
        "(empty: none): a positive value for a wide branch sends more tiles to it (quality for multiply-adds).",
    )

    @model_validator(mode="after")
    def _ascending(self) -> "ClassifyConfig":
        t = self.tvat_thresholds
        if any(b < a for a, b in zip(t, t[1:])):
            raise ValueError(f"tvat_thresholds must be ascending, got {t}")
        if self.classifier is not None and t:
            raise ValueError("classify.classifier routes the tiles; tvat_thresholds must be empty with it")
        if self.classifier_bias and self.classifier is None:
            raise ValueError("classify.classifier_bias needs classify.classifier (TVAT routing has no logits)")
        return self


class BranchConfig(_Section):
    model: str = Field("bicubic", description="Registered model name (see `vsr-stream models`).")
    weights: str | None = Field(
        None, description="Weights file (safetensors or weights-only torch); None for the model's shipped weights."
    )
    device: str = Field("cpu", description="Torch device for this class: 'cpu', 'cuda:0', ...")
    workers: int = Field(1, ge=0, description="Built-in worker count for this class (0: external workers only).")
    max_batch: int = Field(64, ge=1, description="Most tiles per forward pass.")
    max_wait_ms: int = Field(5, ge=0, description="Longest time a tile waits for its batch to fill.")
    merge_px: int = Field(
        0, ge=0, description="Tiles of this class that touch, in one frame and one batch, run as one window "
        "of up to this many LR px a side (0: each tile alone). Route and reuse on small tiles, run the "
        "network on large windows: the output is the same, the context overhead of small tiles is not paid.")
    threads: int = Field(0, ge=0, description="Torch intra-op threads per worker; 0 keeps torch's default.")
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = Field(
        "auto", description="Arithmetic of the network. auto: bf16 where the device computes bf16 natively "
        "(CPU AVX512_BF16/AMX, CUDA) and the model's card records a bf16 cost of at most 0.02 dB on every "
        "validation set, else fp32 (the choice and its reason are logged). fp16/bf16: the learned layers in half "
        "precision, the bicubic skip, the sum and the colour transform in fp32; "
        "a half-precision batch whose output has NaN/Inf is run again in fp32 and counted. int8 (CPU only): "
        "the convolutions quantized after training, calibrated at load on built-in pictures.")
    layout: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="Memory layout of the network's convolution weights: channels_last (NHWC "
        "convolutions) or contiguous (NCHW); auto picks by model family and device (rule and measurements in "
        "vsr_stream/models/inference.py).")
    freeze: bool = Field(
        True, description="CPU, fp32: run the network as a frozen TorchScript trace "
        "(parameters folded in as constants; same output, as fast or faster), on an AVX2 CPU an FSRCNN also "
        "through torch.jit.optimize_for_inference (9-13% faster there, slower on AVX-512: "
        "vsr_stream/models/inference.py); false runs it eagerly.")
    self_ensemble: bool = Field(
        False, description="Average the 8 flips/rotations of each tile (EDSR's geometric self-ensemble): "
        "better quality for 8x the work.")

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> "BranchConfig":
        if self.precision == "int8" and self.device.split(":")[0] != "cpu":
            raise ValueError(f"precision int8 runs on the CPU only (quantized CPU kernels), not on device "
                             f"{self.device!r}; use bf16 or fp16 there")
        return self


class UpscaleConfig(_Section):
    branches: list[BranchConfig] = Field(
        default_factory=lambda: [BranchConfig()],
        min_length=1,
        description="One branch per class, flattest class first.",
    )
    allow_random_weights: bool = Field(
        False, description="Permit models without trained weights (tests and benchmarks only)."
    )


class StitchConfig(_Section):
    feather_px: int | None = Field(
        None,
        ge=0,
        description="Width of the blending ramp at tile edges, in LR pixels; None uses overlap_px.",
    )


class ReuseConfig(_Section):
    """Temporal reuse: a tile whose LR core has not changed since it was last upscaled takes the
    previous output frame's pixels instead of going through a branch network."""

    enabled: bool = Field(True, description="Reuse unchanged tiles from the previous output frame.")
    mad_threshold: float = Field(
        8.0, ge=0, description="A tile is unchanged when every block of its core has a mean |difference| from "
        "the core it had when last upscaled of at most this, per LR pixel and channel on the 0-255 scale "
        "(uint16 frames are compared as value >> 8). 0 reuses only identical cores. The default was chosen "
        "by the sweep in docs/performance.md: with the correction (below) 8 costs 0.037 dB on a noisy "
        "static-camera clip and 0.004 dB on camera-like video.")
    correct: bool = Field(
        True, description="Add to each reused tile the bicubic upscale of how its LR pixels changed since the "
        "previous frame, so that noise and slow edges within the threshold still show, as the networks' "
        "bicubic skip would show them (docs/performance.md: on the static clip, at mad_threshold 2, -0.002 dB "
        "against -0.031 without; at 8, -0.037 against -0.59).")
    min_fraction: float = Field(
        0.75, ge=0, le=1, description="A frame reuses its unchanged tiles only when they are at least this "
        "fraction of its tiles (tiles due for their max_age_frames refresh count as unchanged); below it every "
        "tile is upscaled, as one whole-frame window where merge_px allows: "
        "the windows around the changed tiles cost nearly what the whole frame does, and the corrected stitch "
        "comes on top. With bf16 branches on the AVX-512 BF16 CPU reuse paid a little at 77% of tiles unchanged "
        "(+2% to +13%) and cost 15-24% at 57% (docs/performance.md, 'When reuse pays').")
    block_px: int = Field(
        16, ge=1, description="Side of the blocks the difference is averaged over, in LR pixels (each core is "
        "split into evenly sized blocks of about this side): small enough that a small moving object is not "
        "averaged away over a large tile.")
    max_age_frames: int = Field(
        30, ge=1, description="A tile reused this many frames in a row is upscaled again, which bounds drift "
        "(the first refreshes after a reset are staggered over this many frames, so they do not all come at once).")


class EncodeConfig(_Section):
    codec: str | None = Field(None, description="Video encoder; None picks one for the container.")
    crf: int | None = Field(None, ge=0, le=63, description="Constant rate factor (x264/x265/vpx/av1).")
    bitrate_kbps: int | None = Field(None, ge=1, description="Target bitrate in kbit/s (instead of crf).")
    preset: str | None = Field(None, description="Encoder speed preset, e.g. 'veryfast'.")
    threads: int = Field(0, ge=0, description="Encoder threads; 0 lets the encoder choose (x264: 1.5 per core). "
                         "On few cores, fewer leave more to the branches running beside it.")
    pix_fmt: str | None = Field(None, description="Output pixel format; None keeps the input's family.")
    lossless: bool = Field(False, description="Mathematically lossless output for measurement (ffv1 or libx264rgb qp 0).")
    overwrite: bool = Field(False, description="Replace an existing output.")
    stream_timeout_ms: int = Field(5_000, ge=100, description="Stream outputs (rtsp://): longest wait to "
                                   "connect to the server and for each write.")

    @model_validator(mode="after")
    def _one_rate_control(self) -> "EncodeConfig":
        if self.crf is not None and self.bitrate_kbps is not None:
            raise ValueError("give crf or bitrate_kbps, not both")
        return self


class TransportConfig(_Section):
    mode: Literal["inproc", "ipc", "tcp", "fused"] = Field(
        "inproc", description="inproc: stages as threads; ipc: stages as processes; tcp: processes on TCP ports; "
        "fused: one loop in the calling thread, no sockets, each frame kept on the branches' GPU (CuPy) "
        "from upload to encode when they share one CUDA device."
    )
    host: str = Field("127.0.0.1", description="Interface the tcp mode binds on.")
    port: int = Field(
        5555, ge=0, le=65535,
        description="tcp mode: port of the pipeline's directory socket that external workers ask "
        "for their endpoints; data sockets bind on the following ports. 0 picks free ports.",
    )
    queue_msgs: int = Field(16, ge=1, description="High-water mark of every data socket, in messages.")
    fused_networks: int = Field(
        2, ge=1, description="fused mode on the CPU: network calls that run at once, each in its own thread "
        "with the cores / this many torch threads (a branch's `threads` overrides), so the next frame's networks "
        "run beside this one's. On two cores two one-thread calls beat one two-thread call in all eight same-run "
        "bench comparisons, by 2-25% (median 12%): a two-thread call waits at every layer for the thread that "
        "lost its core to the stitch or the encoder (docs/performance.md). 1: the networks run in the loop's "
        "thread. Ignored on the GPU.")
    stall_timeout_ms: int = Field(
        120_000, ge=100, description="A stage that receives nothing for this long while work is due fails."
    )
    ready_timeout_ms: int = Field(60_000, ge=100, description="Longest wait for every stage to report READY.")


class PipelineConfig(_Section):
    scale: Literal[2, 3, 4] = Field(4, description="Upscaling factor.")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="Decoder settings.")
    tiling: TilingConfig = Field(default_factory=TilingConfig, description="Tile geometry.")
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig, description="TVAT classification.")
    upscale: UpscaleConfig = Field(default_factory=UpscaleConfig, description="Branches, one per class.")
    stitch: StitchConfig = Field(default_factory=StitchConfig, description="Overlap blending.")
    reuse: ReuseConfig = Field(default_factory=ReuseConfig, description="Temporal reuse of unchanged tiles.")
    encode: EncodeConfig = Field(default_factory=EncodeConfig, description="Output encoding.")
    transport: TransportConfig = Field(default_factory=TransportConfig, description="Stage placement.")

    @model_validator(mode="after")
    def _classes_match_branches(self) -> "PipelineConfig":
        n = len(self.upscale.branches)
        t = len(self.classify.tvat_thresholds)
        if self.classify.classifier is None and t != n - 1:
            raise ValueError(
                f"classify.tvat_thresholds has {t} value(s) but upscale.branches has {n}; expected {n - 1}"
            )
        return self

    @model_validator(mode="after")
    def _workers_reachable(self) -> "PipelineConfig":
        if self.transport.mode != "tcp":
            idle = [k for k, b in enumerate(self.upscale.branches) if b.workers == 0]
            if idle:
                raise ValueError(f"upscale.branches {idle} have workers = 0, which only tcp mode allows "
                                 "(external workers join with `vsr-stream worker`)")
        return self

    @property
    def n_classes(self) -> int:
        return len(self.upscale.branches)


def _format_validation(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path}: {e['msg']}{shown}")
    return f"invalid configuration from {origin}: " + "; ".join(lines)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``top``, merging nested dicts instead of replacing them."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config from a path, or a preset name such as ``default`` (see ``configs/``)."""
    path = Path(name_or_path)
    if not path.exists():
        preset = preset_path(str(name_or_path))
        if preset is None:
            raise ConfigError(f"config file not found: {name_or_path} (and no preset of that name)")
        path = preset
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e


SCALE_SECTIONS = ("x2", "x3", "x4")


def apply_scale_section(data: dict[str, Any], scale: Any = None) -> dict[str, Any]:
    """``data`` without its ``x2``/``x3``/``x4`` tables, with the one for ``scale`` merged in.

    ``scale`` defaults to ``data``'s own (else the model default, 4). A table that is not a
    table fails the same way as any other wrong field.
    """
    scale = data.get("scale", PipelineConfig.model_fields["scale"].default) if scale is None else scale
    base = {k: v for k, v in data.items() if k not in SCALE_SECTIONS}
    section = data.get(f"x{scale}")
    if section is None:
        return base
    if not isinstance(section, dict):
        raise ConfigError(f"x{scale}: must be a table of settings for scale {scale}, got {section!r}")
    return deep_merge(base, section)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Nested overrides from ``VSR_STREAM_<SECTION>__<FIELD>=value`` (values parsed as JSON when they can be)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__")]
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def load_config(
    source: str | os.PathLike[str] | dict[str, Any] | PipelineConfig | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> PipelineConfig:
    """Build a validated :class:`PipelineConfig`.

    ``source`` is a TOML path or preset name (read over the ``default`` preset, so a file sets
    only what it changes), a dict or a ready config (over the model defaults below, for
    programs that say everything), or None for the ``default`` preset.
    ``overrides`` (nested dict) wins over the environment, which wins over ``source``.
    Raises :class:`ConfigError` naming the offending field.
    """
    if isinstance(source, PipelineConfig):
        data = source.model_dump()
        origin = "the given config"
    elif isinstance(source, dict):
        data, origin = source, "the given dict"
    elif source is None:
        data, origin = read_config_file(DEFAULT_PRESET), f"the {DEFAULT_PRESET!r} preset"
    else:
        data, origin = read_config_file(source), str(source)
    top = deep_merge(env_overrides(environ), overrides or {})
    if isinstance(source, (str, os.PathLike)) and preset_path(DEFAULT_PRESET) != Path(source) \
            and str(source) != DEFAULT_PRESET:
        # Each file's scale tables are resolved before the file is read over the default, so a
        # preset's own [tiling] wins over the default's [x4.tiling], as its top level should.
        default = read_config_file(DEFAULT_PRESET)
        scale = top.get("scale", data.get("scale", default.get("scale")))
        data = deep_merge(apply_scale_section(default, scale), apply_scale_section(data, scale))
    data = deep_merge(apply_scale_section(data, top.get("scale")), top)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, origin)) from e


class TrainBranchConfig(_Section):
    model: str = Field(..., description="Registered model name trained for this class.")
    steps: int = Field(20_000, ge=0, description="Optimiser steps for this branch; 0 keeps its init weights "
                       "as they are (retrain some classes, keep another's trained branch).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate after the warmup (cosine decay to lr_final_ratio × lr).")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear learning-rate warmup before the cosine decay "
                              "(for a fine-tune: a fresh optimiser's first full-size updates undo some of its init).")
    init: str | list[str] | None = Field(
        None, description="Weights to start from (fine-tuning), e.g. a one-model run's result. A list of "
        "two or more: their uniform average, a model soup (Wortsman et al. 2022) of fine-tunes of one network "
        "from the same start; with steps = 0 the soup itself is the branch's result.")
    init_layers: Literal["all", "matching", "deepen", "prune"] = Field(
        "all", description="'all': init must fit the model exactly; 'matching': take only the tensors whose "
        "name and shape fit (e.g. another scale's body) and initialise the rest as usual; 'deepen': init is "
        "an FSRCNN with fewer mapping layers, the extra ones start as identities (the same function); 'prune': init "
        "is a wider FSRCNN-PS, cut to the model's feature width (the channels largest on the run's patches kept, "
        "the layers reading them refit there by least squares), then deepened as 'deepen' if the model is deeper.")
    loss: Literal["l1", "l2"] = Field(
        "l1", description="Pixel loss: l1 (robust, the usual choice) or l2 (the MSE that PSNR measures, "
        "for a last fine-tuning stage).")
    teacher: str | None = Field(
        None, description="Distillation: weights (a path, or '@stem' for a shipped file) of a frozen teacher "
        "whose output on each training patch is a second target beside the HR patch; the loss is "
        "(1 - distill_weight) x loss(SR, HR) + distill_weight x loss(SR, teacher).")
    teacher_model: str | None = Field(None, description="Registered model of the teacher; None: the branch's own model.")
    teacher_self_ensemble: bool = Field(
        True, description="Average the teacher over the 8 flips/rotations (8 forward passes per step): a "
        "self-ensembled network is a better teacher than the network alone.")
    distill_weight: float = Field(0.5, ge=0, le=1, description="Share of the loss given to the teacher's output.")
    loss_on: Literal["rgb", "y"] = Field(
        "rgb", description="Colour space the loss is scored in: 'rgb', or 'y' (BT.601 luma, what eval measures) "
        "for a luma network: its chroma is bicubic and fixed, and an RGB loss pulls its Y towards cancelling "
        "the chroma error instead of towards the true Y. Refused for an RGB network (its chroma would go untrained).")
    quantize_aware: bool = Field(
        False, description="Quantization-aware training: every forward pass runs the network with the int8 "
        "rounding of precision = 'int8' simulated (weights per channel, activations at the ranges its calibration "
        "gives, refreshed at each validation), so the weights learn to work under it. The result is float weights "
        "to be run with precision = 'int8'; start it from trained weights (init).")

    @model_validator(mode="after")
    def _untrained_needs_init(self) -> "TrainBranchConfig":
        if self.teacher is None and self.teacher_model is not None:
            raise ValueError(f"branch {self.model!r}: teacher_model = {self.teacher_model!r} needs teacher weights")
        if isinstance(self.init, list) and (len(self.init) < 2 or self.init_layers != "all"):
            raise ValueError(f"branch {self.model!r}: a list init is a soup of two or more weights files that each "
                             f"fit the model (init_layers = 'all'); got {len(self.init)} file(s) with "
                             f"init_layers = {self.init_layers!r}")
        if self.quantize_aware and self.init is None:
            raise ValueError(f"branch {self.model!r}: quantize_aware fine-tunes trained weights; give init")
        if self.steps == 0 and self.init is None:
            raise ValueError(f"branch {self.model!r} has steps = 0 and no init: it would ship untrained weights")
        if self.steps and self.warmup_steps >= self.steps:
            raise ValueError(f"branch {self.model!r}: warmup_steps = {self.warmup_steps} leaves none of its "
                             f"{self.steps} steps for the decay")
        return self


class TrainConfig(_Section):
    """`vsr-stream train`: per-class branches on TVAT-sorted patches (MMSR), or one model."""

    name: str = Field(..., description="Run name; outputs go to out_dir/name.")
    scale: Literal[2, 3, 4] = Field(4, description="Upscaling factor.")
    data: list[str] = Field(..., min_length=1, description="HR image folders, image files or videos to train on.")
    video_frame_step: int = Field(10, ge=1, description="Use every n-th frame of training videos.")
    val_root: str | None = Field(None, description="sr-val root (Set5/Set14 layout) for validation PSNR; None holds out training images.")
    val_set: str = Field("Set5", description="Validation set name under val_root.")
    out_dir: str = Field("runs", description="Folder for checkpoints, logs and exported weights.")
    lr_patch_px: int = Field(32, ge=8, description="LR training patch side; TVAT classes are computed on it (match tiling.tile_px).")
    context_px: int = Field(
        0, ge=0, description="LR pixels of real picture around each training patch that the network sees and the "
        "loss does not score, as tiling.context_px around a tile at inference: the loss then teaches the tiled "
        "condition instead of the zero padding at every patch edge (about the receptive radius; costs compute).")
    hr_downscales: list[float] = Field(
        default_factory=list, description="Scale augmentation (FSRCNN, VDSR): every HR picture also enters "
        "made smaller by each of these factors (MATLAB bicubic), its LR made from that, e.g. [0.9, 0.8, 0.7, 0.6].")
    batch: int = Field(32, ge=1, description="Patches per step.")
    vsp_threshold: int = Field(0, ge=0, description="VSP threshold for TVAT (as classify.vsp_threshold).")
    class_quantiles: list[float] = Field(
        default_factory=list, description="Quantiles of training-patch TVAT that become the class thresholds.")
    branches: list[TrainBranchConfig] = Field(..., min_length=1, description="One per class, flattest first.")
    lr_final_ratio: float = Field(0.02, gt=0, le=1, description="Final learning rate as a fraction of the first.")
    parallel: bool = Field(True, description="Train the class branches in parallel worker processes (MMSR).")
    threads: int = Field(0, ge=0, description="Torch threads per branch process; 0 splits the cores evenly.")
    checkpoint_every: int = Field(250, ge=1, description="Steps between checkpoints.")
    validate_every: int = Field(1000, ge=1, description="Steps between validations.")
    patch_pool: int = Field(200_000, ge=100, description="Candidate patch positions drawn to estimate TVAT quantiles and sample classes.")
    seed: int = Field(0, description="Seed of every random choice.")

    @model_validator(mode="after")
    def _classes_match(self) -> "TrainConfig":
        q = self.class_quantiles
        if len(q) != len(self.branches) - 1:
            raise ValueError(f"class_quantiles has {len(q)} value(s) for {len(self.branches)} branches; "
                             f"expected {len(self.branches) - 1}")
        if any(not 0 < v < 1 for v in q) or sorted(q) != q:
            raise ValueError(f"class_quantiles must be ascending and inside (0, 1), got {q}")
        if any(not 0 < f < 1 for f in self.hr_downscales):
            raise ValueError(f"hr_downscales must each be inside (0, 1) (smaller copies), got {self.hr_downscales}")
        return self


def load_train_config(source: str | os.PathLike[str] | dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated :class:`TrainConfig` from a TOML path, preset name or dict; ConfigError names the field."""
    return _load_file_config(TrainConfig, source, overrides, "train config")


_Loaded = TypeVar("_Loaded", bound=BaseModel)


def _load_file_config(model: type[_Loaded], source: str | os.PathLike[str] | dict[str, Any],
                      overrides: dict[str, Any] | None, what: str) -> _Loaded:
    data = source if isinstance(source, dict) else read_config_file(source)
    try:
        return model.model_validate(deep_merge(data, overrides or {}))
    except ValidationError as e:
        raise ConfigError(_format_validation(e, what)) from e


class ClassifierBranchConfig(_Section):
    model: str = Field(..., description="Registered model name of this class's SR branch.")
    weights: str | None = Field(None, description="Its trained weights (stage 1): a file, or '@name' for a shipped "
                                "one; None: the model's shipped weights (or none, for bicubic).")


class ClassifierTrainConfig(_Section):
    """`vsr-stream train-classifier`: ClassSR's class module on trained branches (stage 2: branches
    frozen), then the class module and branches together (stage 3); Class-Loss and Average-Loss."""

    name: str = Field(..., description="Run name; outputs go to out_dir/name.")
    scale: Literal[2, 3, 4] = Field(4, description="Upscaling factor.")
    data: list[str] = Field(..., min_length=1, description="HR image folders, image files or videos to train on.")
    video_frame_step: int = Field(10, ge=1, description="Use every n-th frame of training videos.")
    val_root: str | None = Field(None, description="sr-val root (Set5/Set14 layout) to score the routed pipeline "
                                 "on as training goes; None: no validation.")
    val_set: str = Field("Set5", description="Validation set name under val_root.")
    out_dir: str = Field("runs", description="Folder for checkpoints, logs and exported weights.")
    branches: list[ClassifierBranchConfig] = Field(
        ..., min_length=2, description="The SR branches, one per class, cheapest first (stage 1's result).")
    width: int = Field(128, ge=1, description="Hidden width of the class module (ClassSR: 128).")
    lr_patch_px: int = Field(32, ge=4, description="LR training patch side (ClassSR: 32; the tile the class module reads).")
    batch: int = Field(16, ge=2, description="Patches per step (the Average-Loss balances classes within a batch).")
    classify_steps: int = Field(4000, ge=0, description="Stage 2: steps training the class module, branches frozen.")
    joint_steps: int = Field(1000, ge=0, description="Stage 3: steps training the class module and branches together.")
    lr: float = Field(1e-3, gt=0, description="Stage 2 Adam learning rate (cosine decay to lr_final_ratio × lr).")
    joint_lr: float = Field(1e-5, gt=0, description="Stage 3 Adam learning rate, every network.")
    lr_final_ratio: float = Field(0.02, gt=0, le=1, description="Final learning rate of a stage as a fraction of its first.")
    l1_weight: float = Field(2000.0, ge=0, description="Weight of the L1 loss of the probability-weighted output (ClassSR: 2000).")
    class_weight: float = Field(1.0, ge=0, description="Weight of the Class-Loss, which pushes each tile to one class (ClassSR: 1).")
    class_loss_from: int = Field(
        0, ge=0, description="Step from which the Class-Loss counts (0 before it; ClassSR: 0): the class module first "
        "learns where each tile belongs from the L1 and Average-Loss, and only then is pushed to one class.")
    average_weight: float = Field(6.0, ge=0, description="Weight of the Average-Loss, which balances the classes (ClassSR: 6).")
    val_tiling: TilingConfig = Field(
        default_factory=lambda: TilingConfig(tile_px=32, overlap_px=4, context_px=7),
        description="Tiling of the validation pipeline (tile_px should match lr_patch_px).")
    val_merge_px: int = Field(512, ge=0, description="merge_px of every branch in the validation pipeline.")
    threads: int = Field(0, ge=0, description="Torch threads; 0 keeps torch's default.")
    checkpoint_every: int = Field(250, ge=1, description="Steps between checkpoints.")
    validate_every: int = Field(1000, ge=1, description="Steps between validations.")
    patch_pool: int = Field(200_000, ge=100, description="Candidate patch positions to draw batches from.")
    seed: int = Field(0, description="Seed of every random choice.")


def load_classifier_train_config(source: str | os.PathLike[str] | dict[str, Any],
                                 overrides: dict[str, Any] | None = None) -> ClassifierTrainConfig:
    """A validated :class:`ClassifierTrainConfig` from a TOML path or dict; ConfigError names the field."""
    return _load_file_config(ClassifierTrainConfig, source, overrides, "classifier train config")
