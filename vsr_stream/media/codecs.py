"""Which video encoder, pixel format and options an output gets (policy only, no I/O).

Hardware encoders (``h264_nvenc``, ``hevc_nvenc``, ...) are chosen with ``encode.codec``;
``crf`` maps to NVENC's constant-quality ``cq``. Where the hardware is missing the encoder
fails to start and the sink names what it needs.

Lossless means bit-exact RGB: FFV1 in an RGB format (bgr0, or gbrp16le for 16-bit frames),
or libx264rgb at qp 0 (8-bit only). Lossy defaults: libx264 (VP9 for webm), yuv420p for
8-bit sources and yuv420p10le for deeper ones when the encoder has it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction

import av

from vsr_stream.config import EncodeConfig
from vsr_stream.errors import SinkError

log = logging.getLogger(__name__)

_LOSSY_DEFAULT = {"webm": "libvpx-vp9"}
_LOSSLESS_DEFAULT = {"mp4": "libx264rgb", "mov": "libx264rgb", "ipod": "libx264rgb"}
_LOSSLESS_PIX_FMT = {("ffv1", 8): "bgr0", ("ffv1", 16): "gbrp16le", ("libx264rgb", 8): "rgb24"}
_LOSSLESS_OPTIONS = {"ffv1": {"level": "3", "slicecrc": "1"}, "libx264rgb": {"qp": "0"}}


@dataclass(frozen=True)
class EncoderPlan:
    """An encoder choice: codec name, pixel format, private options, bit rate (bit/s), threads
    (0: the encoder's choice)."""

    codec: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int | None = None
    threads: int = 0


def plan_encoder(container_format: str, cfg: EncodeConfig, bit_depth: int) -> EncoderPlan:
    """The encoder for frames of ``bit_depth`` (8 or 16) in ``container_format`` (FFmpeg
    muxer name). Raises SinkError for an unknown codec, an unsupported pix_fmt, or a
    lossless request this container/depth cannot honour."""
    if cfg.lossless:
        return _lossless(container_format, cfg, bit_depth)
    codec = cfg.codec or _LOSSY_DEFAULT.get(container_format, "libx264")
    formats = _pixel_formats(codec)
    pix_fmt = cfg.pix_fmt or _default_pix_fmt(codec, formats, bit_depth)
    if formats and pix_fmt not in formats:
        raise SinkError(f"encoder {codec} cannot take pix_fmt {pix_fmt!r}; it takes {', '.join(formats)}")
    return EncoderPlan(codec, pix_fmt, _rate_options(codec, cfg), cfg.bitrate_kbps * 1000 if cfg.bitrate_kbps else None,
                       cfg.threads)


def _lossless(container_format: str, cfg: EncodeConfig, bit_depth: int) -> EncoderPlan:
    codec = cfg.codec or _LOSSLESS_DEFAULT.get(container_format, "ffv1")
    pix_fmt = _LOSSLESS_PIX_FMT.get((codec, bit_depth))
    if pix_fmt is None:
        raise SinkError(
            f"lossless {bit_depth}-bit output with {codec} in {container_format} is not possible: "
            "use ffv1 (.mkv/.avi/.nut) for any depth, or libx264rgb (.mp4) for 8-bit sources"
        )
    if cfg.pix_fmt and cfg.pix_fmt != pix_fmt:
        log.warning("lossless output ignores pix_fmt=%s and uses %s (RGB, bit exact)", cfg.pix_fmt, pix_fmt)
    options = dict(_LOSSLESS_OPTIONS[codec])
    if cfg.preset and codec == "libx264rgb":
        options["preset"] = cfg.preset
    return EncoderPlan(codec, pix_fmt, options, threads=cfg.threads)


def _pixel_formats(codec: str) -> list[str]:
    try:
        found = av.Codec(codec, "w").video_formats
    except (av.error.FFmpegError, ValueError) as e:
        raise SinkError(f"unknown video encoder {codec!r} (this FFmpeg build lacks it)") from e
    return [f.name for f in found or ()]


def _default_pix_fmt(codec: str, formats: list[str], bit_depth: int) -> str:
    if bit_depth > 8 and "yuv420p10le" in formats:
        return "yuv420p10le"
    if bit_depth > 8:
        log.warning("%s has no 10-bit 4:2:0 format; writing 8-bit yuv420p from a deeper source", codec)
    return "yuv420p" if not formats or "yuv420p" in formats else formats[0]


_HARDWARE = {"_nvenc": "an NVIDIA GPU and its driver (NVENC)", "_qsv": "an Intel GPU with Quick Sync",
             "_vaapi": "a VA-API device", "_amf": "an AMD GPU (AMF)", "_videotoolbox": "macOS VideoToolbox"}


def hardware_requirement(codec: str) -> str | None:
    """What a hardware encoder needs to start (None for software encoders)."""
    return next((need for suffix, need in _HARDWARE.items() if codec.endswith(suffix)), None)


def _rate_options(codec: str, cfg: EncodeConfig) -> dict[str, str]:
    options: dict[str, str] = {}
    if cfg.crf is not None and codec.endswith("_nvenc"):
        # NVENC has no crf: constant quality is cq under variable-bitrate rate control.
        options["cq"] = str(cfg.crf)
        if cfg.bitrate_kbps is None:
            options["rc"] = "vbr"
            options["b"] = "0"
    elif cfg.crf is not None:
        options["crf"] = str(cfg.crf)
    if cfg.preset:
        options["preset"] = cfg.preset
    if codec.startswith("libvpx") and cfg.bitrate_kbps is None:
        # libvpx only does constant quality with a zero target bit rate.
        options.setdefault("crf", "32")
        options["b"] = "0"
    return options


_ZERO_LATENCY = {"libx264", "libx264rgb", "libx265"}


def live_encoder_options(codec: str, frame_rate: Fraction | None) -> dict[str, str]:
    """Encoder options for live outputs (explicit ones win): a keyframe every second, so a
    reader joining a stream or a damaged recording recovers quickly, and no lookahead delay."""
    options = {"g": str(max(1, round(frame_rate or 25)))}
    if codec in _ZERO_LATENCY:
        options["tune"] = "zerolatency"
    return options


# x264's names for the instruction sets below AVX-512, and the /proc/cpuinfo flag each needs
# (MMX2, SSE and SSE2 are in every x86-64 CPU).
_X264_BELOW_AVX512 = (("MMX2", None), ("SSE", None), ("SSE2", None), ("SSE3", "pni"), ("SSSE3", "ssse3"),
                      ("SSE4.1", "sse4_1"), ("SSE4.2", "sse4_2"), ("AVX", "avx"), ("XOP", "xop"),
                      ("FMA4", "fma4"), ("FMA3", "fma"), ("AVX2", "avx2"), ("LZCNT", "abm"),
                      ("BMI1", "bmi1"), ("BMI2", "bmi2"))


def x264_reproducible_options(flags: frozenset[str]) -> dict[str, str]:
    """libx264 options that make its output a function of its input on a CPU with ``flags``.

    With its AVX-512 code, the x264 that PyAV bundles encodes the same frames to different
    streams in different processes, even with one thread (measured on an AMD EPYC with
    AVX-512: three of three runs differed; capped at AVX2, three of three were identical).
    So on such a CPU the instruction sets are named up to AVX2; elsewhere nothing changes.
    """
    if not any(f.startswith("avx512") for f in flags):
        return {}
    names = [name for name, flag in _X264_BELOW_AVX512 if flag is None or flag in flags]
    return {"x264-params": "asm=" + ",".join(names)}
