"""Generated test media: small deterministic clips and PNGs, so tests and the built-in
example need no external files.

Pictures mix a flat grey block, smooth gradients, detail (a checkerboard that moves two
pixels a frame) and noise (a seeded patch), so every TVAT class gets tiles.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr_stream.media.colour import rgb_format, sws_matrix
from vsr_stream.media.png_sink import encode_png

_AUDIO_RATE = 48_000
_TONE_HZ = 440.0


def picture(index: int, height: int, width: int, *, bit_depth: int = 8, seed: int = 0) -> np.ndarray:
    """Frame ``index`` of the test pattern: (height, width, 3) RGB, uint8 (bit_depth 8) or
    uint16 on the full 0-65535 scale (anything deeper)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.empty((height, width, 3))
    rgb[..., 0] = x / max(width - 1, 1)
    rgb[..., 1] = y / max(height - 1, 1)
    rgb[..., 2] = 0.5
    checker = (((x + 2 * index) // 4 + y // 4) % 2)[..., None]
    lower_left = (y >= height // 2) & (x < width // 2)
    rgb[lower_left] = np.broadcast_to(checker, rgb.shape)[lower_left]
    rgb[(y >= height // 2) & (x >= 3 * width // 4)] = 0.5
    noise = np.random.default_rng(seed * 100_003 + index).random((height, width, 3))
    upper_right = (y < height // 3) & (x >= 2 * width // 3)
    rgb[upper_right] = noise[upper_right]
    peak = 255 if bit_depth == 8 else 65535
    return np.round(rgb * peak).astype(np.uint8 if bit_depth == 8 else np.uint16)


def frame_times(frames: int, fps: Fraction, vfr: bool) -> tuple[Fraction, list[int], list[int]]:
    """(time_base, pts list, duration list) of the test clip; VFR alternates 1 and 2 frame
    periods (at 1/1000 s), CFR counts frames at 1/fps."""
    if not vfr:
        return 1 / Fraction(fps), list(range(frames)), [1] * frames
    step = round(1000 / Fraction(fps))
    durations = [step * (1 + i % 2) for i in range(frames)]
    pts = [sum(durations[:i]) for i in range(frames)]
    return Fraction(1, 1000), pts, durations


def write_clip(
    path: str | Path,
    *,
    width: int = 96,
    height: int = 64,
    frames: int = 12,
    fps: Fraction = Fraction(24),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: bool = True,
    subtitles: bool = False,
    vfr: bool = False,
    bit_depth: int = 8,
    color: Mapping[str, int] | None = None,
    rotation_deg: float = 0,
    language: str | None = None,
    chapters: bool = False,
    seed: int = 0,
) -> Path:
    """Write a test clip and return its path.

    ``bit_depth=10`` switches the default pix_fmt to yuv420p10le. ``color`` holds FFmpeg enum
    values keyed ``colorspace``/``color_range``/``color_primaries``/``color_trc``; the RGB to
    YUV conversion uses that matrix and range. Audio is a sine tone (AAC, Opus for webm) of the
    clip's duration; subtitles are two cues (subrip, mov_text for mp4/mov). ``language`` tags
    the video and audio streams; ``chapters`` adds two chapters.
    """
    path = Path(path)
    if bit_depth == 10 and pix_fmt == "yuv420p":
        pix_fmt = "yuv420p10le"
    time_base, pts, durations = frame_times(frames, fps, vfr)
    end = Fraction(pts[-1] + durations[-1]) * time_base
    with av.open(str(path), "w") as out:
        video = _add_video(out, codec, pix_fmt, width, height, fps, time_base, color or {})
        if rotation_deg:
            video.set_display_rotation(rotation_deg)
        sound = _add_audio(out, path) if audio else None
        subs = _add_subtitles(out, path) if subtitles else None
        for stream in (video, sound):
            if stream is not None and language:
                stream.metadata["language"] = language
        if chapters:
            out.set_chapters(_chapters(end))
        _write_video(out, video, pix_fmt, color or {}, pts, durations, time_base, bit_depth, seed)
        if sound is not None:
            _write_audio(out, sound, end)
        if subs is not None:
            _write_subtitles(out, subs, path, end)
    return path


def write_images(folder: str | Path, sizes: Iterable[tuple[int, int]], seed: int = 0, *, bit_depth: int = 8) -> list[Path]:
    """Write ``img_000.png``, ``img_001.png``, ... with the given (height, width) sizes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        rgb = picture(i, h, w, bit_depth=bit_depth, seed=seed)
        path = folder / f"img_{i:03d}.png"
        path.write_bytes(encode_png(rgb))
        paths.append(path)
    return paths


def _add_video(out, codec, pix_fmt, width, height, fps, time_base, color):
    stream = out.add_stream(codec, rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.codec_context.thread_count = 1  # threaded x264/vpx output depends on the core count
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    for name, value in color.items():
        setattr(stream.codec_context, name, value)
    if codec.startswith("libx264"):
        stream.codec_context.options = {"preset": "ultrafast", "crf": "18"}
    return stream


def _write_video(out, stream, pix_fmt, color, pts, durations, time_base, bit_depth, seed) -> None:
    h, w = stream.height, stream.width
    for i, (p, d) in enumerate(zip(pts, durations)):
        rgb = av.VideoFrame.from_ndarray(picture(i, h, w, bit_depth=bit_depth, seed=seed), format=rgb_format(bit_depth))
        frame = rgb.reformat(
            format=pix_fmt,
            dst_colorspace=sws_matrix(color.get("colorspace")),
            dst_color_range=color.get("color_range"),
        )
        for name, value in color.items():
            setattr(frame, name, value)
        frame.pts, frame.time_base, frame.duration = p, time_base, d
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _add_audio(out, path: Path):
    codec = "libopus" if path.suffix.lower() == ".webm" else "aac"
    stream = out.add_stream(codec, rate=_AUDIO_RATE)
    stream.layout = "mono"
    return stream


def _write_audio(out, stream, end: Fraction) -> None:
    total = int(end * _AUDIO_RATE)
    t = np.arange(total) / _AUDIO_RATE
    tone = (0.3 * np.sin(2 * np.pi * _TONE_HZ * t)).astype(np.float32)
    for start in range(0, total, 960):
        frame = av.AudioFrame.from_ndarray(tone[None, start : start + 960], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = _AUDIO_RATE, start, Fraction(1, _AUDIO_RATE)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _add_subtitles(out, path: Path):
    codec = "mov_text" if path.suffix.lower() in (".mp4", ".mov", ".m4v") else "subrip"
    stream = out.add_mux_stream(codec)
    stream.time_base = Fraction(1, 1000)
    return stream


def _write_subtitles(out, stream, path: Path, end: Fraction) -> None:
    half = int(end * 500)
    for i, text in enumerate(("first cue", "second cue")):
        data = text.encode()
        if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            data = struct.pack(">H", len(data)) + data
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = i * half
        packet.duration, packet.time_base = half, Fraction(1, 1000)
        out.mux(packet)


def _chapters(end: Fraction) -> list[dict]:
    half = int(end * 500)
    return [
        {"id": i + 1, "start": i * half, "end": (i + 1) * half, "time_base": Fraction(1, 1000),
         "metadata": {"title": f"Chapter {i + 1}"}}
        for i in range(2)
    ]
