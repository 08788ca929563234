"""Output streams of a file sink: passthrough streams copied from the source's own streams
(``add_stream_from_template``), and the descriptive data (metadata, language, disposition,
chapters) carried over from the SourceInfo."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
from av.stream import Disposition

from vsr_stream.errors import SinkError
from vsr_stream.media.items import SourceInfo, StreamInfo
from vsr_stream.media.urls import error_text, redact_url

# Describe the input file or the old encode, not the content: stale once re-encoded.
_CONTAINER_KEYS_DROPPED = {"major_brand", "minor_version", "compatible_brands", "encoder"}
_VIDEO_KEYS_DROPPED = {"duration", "bps", "number_of_frames", "number_of_bytes", "encoder", "_statistics_tags", "_statistics_writing_app", "_statistics_writing_date_utc"}


def add_passthrough(container: av.container.OutputContainer, source: SourceInfo) -> dict[int, av.stream.Stream]:
    """One output stream per passthrough stream of ``source`` (source index -> stream).
    Reopens ``source.url`` for the stream parameters. SinkError names a stream the output
    container cannot hold."""
    if not source.passthrough:
        return {}
    out: dict[int, av.stream.Stream] = {}
    with _open_templates(source.url) as templates:
        for info in source.passthrough:
            out[info.index] = _add_one(container, templates.streams[info.index], info)
    return out


def _open_templates(url: str) -> av.container.InputContainer:
    try:
        return av.open(url, "r")
    except (av.error.FFmpegError, OSError) as e:
        raise SinkError(f"cannot reopen the source {redact_url(url)} to copy its audio/subtitle stream parameters: {error_text(e)}") from e


def _add_one(container: av.container.OutputContainer, template: av.stream.Stream, info: StreamInfo) -> av.stream.Stream:
    try:
        stream = container.add_stream_from_template(template)
    except (ValueError, av.error.FFmpegError) as e:
        raise SinkError(
            f"passthrough stream {info.index} ({info.type}, codec {info.codec_name}) cannot go into a "
            f"{container.format.name} file ({error_text(e)}); use a container that holds it, e.g. .mkv"
        ) from e
    describe(stream, info.metadata, info.language, info.disposition)
    return stream


def describe(stream: av.stream.Stream, metadata: dict[str, str], language: str | None, disposition: int | list[str]) -> None:
    """Copy metadata, language and disposition onto an output stream."""
    stream.metadata.update(metadata)
    if language:
        stream.metadata["language"] = language
    stream.disposition = disposition_value(disposition)


def disposition_value(disposition: int | list[str]) -> int:
    """FFmpeg disposition flags from an int or a list of flag names."""
    if isinstance(disposition, int):
        return disposition
    return sum(Disposition[name].value for name in disposition)


def video_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The source video stream's tags minus those describing the old encode."""
    return {k: v for k, v in metadata.items() if k.lower() not in _VIDEO_KEYS_DROPPED}


def copy_container_data(container: av.container.OutputContainer, source: SourceInfo) -> None:
    """Container metadata (minus file-format keys) and chapters."""
    container.metadata.update({k: v for k, v in source.container_metadata.items() if k.lower() not in _CONTAINER_KEYS_DROPPED})
    if source.chapters:
        container.set_chapters([_chapter(ch) for ch in source.chapters])


def _chapter(ch: dict[str, Any]) -> dict[str, Any]:
    return {**ch, "time_base": Fraction(*ch["time_base"]), "metadata": dict(ch.get("metadata", {}))}
