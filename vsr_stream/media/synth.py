"""Generated test media: small deterministic clips and PNGs, so tests and the built-in
example need no external files.

Pictures mix a flat grey block, smooth gradients, detail (a checkerboard that moves two
pixels a frame) and noise (a seeded patch), so every TVAT class gets tiles.

Benchmark clips (``vsr-stream bench``) are made from HR frames, kept for scoring: a camera
panning and zooming across pictures (:func:`camera_frames`) or a static camera with moving
objects (:func:`static_frames`), downscaled and encoded by :func:`write_lr_clip`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr_stream.cpuinfo import this_cpu_flags
from vsr_stream.errors import ModelInputError
from vsr_stream.media.codecs import x264_reproducible_options
from vsr_stream.media.colour import rgb_format, sws_matrix
from vsr_stream.media.png_sink import encode_png
from vsr_stream.quality.imresize import imresize

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
        stream.codec_context.options = {"preset": "ultrafast", "crf": "18",
                                        **x264_reproducible_options(this_cpu_flags())}
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


# --- Benchmark clips: camera-like motion over a picture, and a static camera with moving objects ---

CAMERA_ZOOM_MAX = 1.25  # the camera's crop is at most this many times the frame size (a slow zoom)
_ZOOM_PERIOD_FRAMES = 96  # one zoom in and out
_PAN_PX = (1.0, 3.0)  # camera pan speed in HR px per frame (down, right), bouncing at the picture's edges


def enlarged_picture(h: int, w: int, *, factor: int = 2, seed: int = 0) -> np.ndarray:
    """An (h, w, 3) uint8 :func:`picture` drawn at 1/``factor`` of the size and enlarged by
    MATLAB bicubic: its finest detail (the checkerboard, the noise patch) then spans ``factor``
    px, so at x4 it lies between the LR and HR sampling limits, as a camera's would (at full
    size it would sit beyond both and only alias)."""
    small = picture(0, -(-h // factor), -(-w // factor), seed=seed)
    return imresize(small, float(factor))[:h, :w] if factor > 1 else small


def fit_canvas(image: np.ndarray, min_h: int, min_w: int) -> np.ndarray:
    """``image`` ((H, W) grey or (H, W, 3) RGB, uint8) as RGB at least ``min_h x min_w``:
    enlarged by MATLAB bicubic (one factor for both axes) only when it is smaller."""
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    factor = max(min_h / rgb.shape[0], min_w / rgb.shape[1])
    if factor <= 1:
        return np.ascontiguousarray(rgb)
    shape = (max(min_h, math.ceil(rgb.shape[0] * factor)), max(min_w, math.ceil(rgb.shape[1] * factor)))
    return imresize(np.ascontiguousarray(rgb), output_shape=shape)


def mosaic(images: Iterator[np.ndarray], min_h: int, min_w: int) -> np.ndarray:
    """An RGB uint8 canvas of at least ``min_h x min_w`` made of pictures at their own resolution.

    ``images`` yields (H, W) grey or (H, W, 3) RGB uint8 pictures; as many are taken as the
    canvas needs. A first picture that covers the canvas is the canvas. Otherwise pictures are
    laid side by side in rows, each turned to landscape and centre-cropped to the first one's
    landscape size (a smaller one is enlarged to it by :func:`fit_canvas` first). Unlike one
    enlarged picture, every HR pixel is then a photograph's own pixel: a ground truth with the
    detail a real HR frame has, not a bicubic enlargement that bicubic upscaling would match.
    Raises :class:`ModelInputError` if ``images`` runs out before the canvas is covered.
    """
    first = fit_canvas(_landscape(_next_picture(images)), 1, 1)
    if first.shape[0] >= min_h and first.shape[1] >= min_w:
        return first
    ch, cw = first.shape[:2]
    rows, cols = -(-min_h // ch), -(-min_w // cw)
    canvas = np.empty((rows * ch, cols * cw, 3), np.uint8)
    for k in range(rows * cols):
        cell = first if k == 0 else fit_canvas(_landscape(_next_picture(images)), ch, cw)
        y0, x0 = (cell.shape[0] - ch) // 2, (cell.shape[1] - cw) // 2
        r, c = divmod(k, cols)
        canvas[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = cell[y0:y0 + ch, x0:x0 + cw]
    return canvas


def _next_picture(images: Iterator[np.ndarray]) -> np.ndarray:
    picture = next(images, None)
    if picture is None:
        raise ModelInputError("mosaic: the pictures ran out before the canvas was covered")
    return picture


def _landscape(image: np.ndarray) -> np.ndarray:
    """``image`` turned a quarter when it is taller than wide."""
    return np.ascontiguousarray(np.rot90(image)) if image.shape[0] > image.shape[1] else image


def camera_canvas_size(h: int, w: int) -> tuple[int, int]:
    """Smallest (h, w) of a picture that :func:`camera_frames` can pan and zoom across for
    ``h x w`` frames: the largest crop plus a fifth of it to pan over."""
    return math.ceil(h * CAMERA_ZOOM_MAX * 1.2), math.ceil(w * CAMERA_ZOOM_MAX * 1.2)


def camera_window(index: int, canvas_hw: tuple[int, int], h: int, w: int) -> tuple[int, int, int, int]:
    """(y0, x0, crop_h, crop_w) that frame ``index`` of a pan-and-zoom shot cuts from a canvas
    of ``canvas_hw`` (at least :func:`camera_canvas_size`): the crop is ``zoom`` times ``h x w``,
    with zoom going 1 -> CAMERA_ZOOM_MAX -> 1 over a cosine period, and its corner moving
    at ``_PAN_PX`` per frame, bouncing at the canvas edges."""
    zoom = 1 + (CAMERA_ZOOM_MAX - 1) * (1 - math.cos(2 * math.pi * index / _ZOOM_PERIOD_FRAMES)) / 2
    crop_h, crop_w = min(round(h * zoom), canvas_hw[0]), min(round(w * zoom), canvas_hw[1])
    y0 = _bounce(index * _PAN_PX[0], canvas_hw[0] - crop_h)
    x0 = _bounce(index * _PAN_PX[1], canvas_hw[1] - crop_w)
    return y0, x0, crop_h, crop_w


def _bounce(travel_px: float, span_px: int) -> int:
    """Position after travelling ``travel_px`` back and forth along ``[0, span_px]``."""
    if span_px <= 0:
        return 0
    p = travel_px % (2 * span_px)
    return round(p if p <= span_px else 2 * span_px - p)


def camera_frames(canvases: list[np.ndarray], frames: int, h: int, w: int,
                  segment_frames: int = 48) -> Iterator[np.ndarray]:
    """``frames`` HR frames, (h, w, 3) uint8, of a camera panning and slowly zooming across
    ``canvases`` (RGB uint8, each at least :func:`camera_canvas_size`): a cut to the next
    canvas every ``segment_frames``, the shot restarting there. Zoomed crops are resized to
    ``h x w`` with MATLAB bicubic (antialiased)."""
    for i in range(frames):
        canvas = canvases[(i // segment_frames) % len(canvases)]
        y0, x0, ch, cw = camera_window(i % segment_frames, canvas.shape[:2], h, w)
        crop = canvas[y0:y0 + ch, x0:x0 + cw]
        yield crop.copy() if (ch, cw) == (h, w) else imresize(crop, output_shape=(h, w))


def static_frames(background: np.ndarray, textures: list[np.ndarray], frames: int, *,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """``frames`` HR frames of a fixed camera: ``background`` ((h, w, 3) uint8, unchanged) with
    one disc per texture (square (d, d, 3) uint8, d < min(h, w)) moving in a straight line at
    2-6 px per frame and bouncing at the frame edges; start points and velocities from ``seed``."""
    h, w = background.shape[:2]
    rng = np.random.default_rng(seed)
    movers = []
    for tex in textures:
        d = tex.shape[0]
        yy, xx = np.mgrid[0:d, 0:d] - (d - 1) / 2
        start = rng.uniform([0, 0], [h - d, w - d])
        angle = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(2, 6) * np.array([math.sin(angle), math.cos(angle)])
        movers.append((tex, (yy * yy + xx * xx) <= (d / 2) ** 2, start, speed))
    for i in range(frames):
        frame = background.copy()
        for tex, disc, start, speed in movers:
            d = tex.shape[0]
            y0, x0 = _bounce(start[0] + i * speed[0], h - d), _bounce(start[1] + i * speed[1], w - d)
            view = frame[y0:y0 + d, x0:x0 + d]
            view[disc] = tex[disc]
        yield frame


def add_sensor_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``frame`` (uint8) plus white Gaussian noise of ``sigma`` grey levels, rounded and clipped."""
    if sigma <= 0:
        return frame
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def write_lr_clip(path: str | Path, hr_frames: Iterable[np.ndarray], scale: int, *, crf: int = 23,
                  noise_sigma: float = 0.0, fps: Fraction = Fraction(24), seed: int = 0) -> int:
    """Encode the LR versions of ``hr_frames`` ((H, W, 3) uint8, H and W multiples of
    ``2 * scale``) into ``path``: each frame MATLAB-bicubic downscaled by ``scale``, plus
    ``noise_sigma`` grey levels of sensor-like noise (seeded per frame), then libx264
    (preset medium, ``crf``, yuv420p, one thread and no AVX-512 code: reproducible, see
    :func:`~vsr_stream.media.codecs.x264_reproducible_options`). Returns the frame count."""
    time_base = 1 / Fraction(fps)
    n = 0
    with av.open(str(path), "w") as out:
        stream = None
        for hr in hr_frames:
            lr_hw = (hr.shape[0] // scale, hr.shape[1] // scale)
            if stream is None:
                stream = _add_video(out, "libx264", "yuv420p", lr_hw[1], lr_hw[0], fps, time_base, {})
                stream.codec_context.options = {**stream.codec_context.options, "preset": "medium", "crf": str(crf)}
            lr = add_sensor_noise(imresize(hr, output_shape=lr_hw), noise_sigma,
                                  np.random.default_rng((seed, n)))
            frame = av.VideoFrame.from_ndarray(lr, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base, frame.duration = n, time_base, 1
            out.mux(stream.encode(frame))
            n += 1
        if stream is not None:
            out.mux(stream.encode(None))
    return n
