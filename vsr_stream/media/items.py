"""What a source yields and what describes it.

``VideoFrameItem`` and ``PacketItem`` are the two kinds of item a :class:`~vsr_stream.media.
source.Source` yields; ``SourceInfo`` describes the source and is JSON-serialisable through
``to_wire`` / ``from_wire`` (Fractions as ``[num, den]``) so the stages can send it over
ZeroMQ. Colour fields hold FFmpeg enum values (``AVColorSpace``, ``AVColorRange``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any, Literal

import numpy as np


@dataclass
class VideoFrameItem:
    """One decoded picture: ``array`` is (H, W, 3) RGB, uint8 (8-bit sources) or uint16 (full
    0-65535 scale, deeper sources). ``pts`` counts ``time_base`` units (None when the source
    has none); ``name`` is the source image's file name for image inputs."""

    index: int
    pts: int | None
    time_base: Fraction | None
    duration: int | None
    array: np.ndarray
    name: str | None = None


@dataclass
class PacketItem:
    """One untouched packet of a passthrough stream (audio, subtitle, data)."""

    stream_index: int
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Fraction
    is_keyframe: bool
    data: bytes


@dataclass(frozen=True)
class VideoInfo:
    """The upscaled video stream. ``bit_depth`` (8 or 16) is the dtype of the arrays this
    source yields; ``pix_fmt`` is the input's own pixel format."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    pix_fmt: str
    bit_depth: int
    color_range: int | None = None
    colorspace: int | None = None
    color_primaries: int | None = None
    color_trc: int | None = None
    rotation_deg: float = 0.0
    sample_aspect_ratio: Fraction | None = None
    frame_count: int | None = None
    codec_name: str | None = None
    language: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    disposition: int | list[str] = 0


@dataclass(frozen=True)
class StreamInfo:
    """A passthrough stream, by its index in the source container."""

    index: int
    type: Literal["audio", "subtitle", "data", "attachment"]
    codec_name: str | None
    time_base: Fraction
    language: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    disposition: int | list[str] = 0


@dataclass(frozen=True)
class SourceInfo:
    """Everything downstream needs to know about a source. ``url`` is the real location
    (show it with :func:`~vsr_stream.media.urls.redact_url`); ``image_names`` lists the
    pictures of an image input in yield order (None for video); ``live`` marks a network stream."""

    url: str
    kind: Literal["video", "images"]
    video: VideoInfo
    passthrough: tuple[StreamInfo, ...] = ()
    image_names: tuple[str, ...] | None = None
    container_metadata: dict[str, str] = field(default_factory=dict)
    chapters: list[dict[str, Any]] = field(default_factory=list)
    live: bool = False  # a network stream without an end: outputs are written in place

    def to_wire(self) -> dict[str, Any]:
        """A JSON-serialisable dict (Fractions become ``[num, den]``, tuples lists)."""
        return _to_json(asdict(self))

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> SourceInfo:
        """Inverse of :meth:`to_wire`."""
        names = d.get("image_names")
        return cls(
            url=d["url"],
            kind=d["kind"],
            video=_dataclass_from_wire(VideoInfo, d["video"]),
            passthrough=tuple(_dataclass_from_wire(StreamInfo, s) for s in d.get("passthrough", ())),
            image_names=None if names is None else tuple(names),
            container_metadata=dict(d.get("container_metadata", {})),
            chapters=[dict(c) for c in d.get("chapters", [])],
            live=bool(d.get("live", False)),
        )


_FRACTION_FIELDS = {"time_base", "frame_rate", "sample_aspect_ratio"}


def _to_json(value: Any) -> Any:
    if isinstance(value, Fraction):
        return [value.numerator, value.denominator]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _dataclass_from_wire(cls: type, d: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        if f.name in _FRACTION_FIELDS and value is not None:
            value = Fraction(*value)
        kwargs[f.name] = value
    return cls(**kwargs)
