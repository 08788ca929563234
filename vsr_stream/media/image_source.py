"""Still images as a source: one image, a folder of images, a glob (``frames/*.png``) or a
printf pattern (``img_%04d.png``). Names sort in natural order (``img2`` before ``img10``);
every image keeps its own size. Images decode through FFmpeg (so 16-bit PNGs keep their
depth, which Pillow would cut to 8 bits); grey, palette and alpha images become RGB.
"""

from __future__ import annotations

import errno
import glob
import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from vsr_stream.errors import SourceError
from vsr_stream.media.frames import bit_depth_of, frame_to_rgb, has_alpha
from vsr_stream.media.items import SourceInfo, VideoFrameItem, VideoInfo
from vsr_stream.media.urls import error_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".tga", ".dpx", ".exr", ".jp2"}
)
# Image sequences have no timing of their own; FFmpeg's image2 demuxer assumes 25 fps too.
IMAGE_RATE = Fraction(25)
_PRINTF = re.compile(r"%0?(\d*)d")
_GLOB = re.compile(r"[*?[]")


def natural_key(name: str) -> list[object]:
    """Sort key putting ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_image(path: Path) -> bool:
    """Whether ``path`` has a still-image extension."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_pattern(url: str) -> bool:
    """Whether ``url`` is an image glob or printf pattern rather than a file name."""
    return bool(_GLOB.search(url) or _PRINTF.search(Path(url).name))


def list_images(url: str) -> list[Path] | None:
    """The image files ``url`` names (sorted), or None when it does not name images at all
    (then it is a video). Raises SourceError for an image folder or pattern that matches nothing."""
    path = Path(url)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and is_image(p) and not p.name.startswith(".")]
        return _non_empty(sorted(found, key=lambda p: natural_key(p.name)), url, "folder holds no images")
    if path.is_file():
        return [path] if is_image(path) else None
    if _PRINTF.search(path.name):
        return _non_empty(_printf_matches(path), url, "no image file matches the printf pattern")
    if _GLOB.search(url):
        found = [Path(p) for p in glob.glob(url) if is_image(Path(p)) and Path(p).is_file()]
        return _non_empty(sorted(found, key=lambda p: natural_key(str(p))), url, "no image file matches the glob")
    return None


def _printf_matches(path: Path) -> list[Path]:
    """Files matching ``img_%04d.png`` in number order (any digit count, as FFmpeg's image2)."""
    if not path.parent.is_dir():
        return []
    head, _, tail = _PRINTF.split(path.name, maxsplit=1)
    regex = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
    matches = []
    for candidate in path.parent.iterdir():
        m = regex.match(candidate.name)
        if m and candidate.is_file() and is_image(candidate):
            matches.append((int(m.group(1)), candidate))
    return [p for _, p in sorted(matches)]


def _non_empty(paths: list[Path], url: str, reason: str) -> list[Path]:
    if not paths:
        raise SourceError(errno.ENOENT, f"{url}: {reason} (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return paths


def load_image(path: Path) -> av.VideoFrame:
    """The picture in an image file, as decoded by FFmpeg; SourceError if it is not one."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video
            frame = next(container.decode(video[0]), None) if video else None
    except (av.error.FFmpegError, OSError) as e:
        raise SourceError(f"{path}: cannot read image: {error_text(e)}") from e
    if frame is None:
        raise SourceError(f"{path}: not an image (no decodable picture inside)")
    return frame


class ImageSource:
    """Images as frames (index = position in name order, pts = index at 1/25 s)."""

    def __init__(self, url: str, paths: list[Path]) -> None:
        first = load_image(paths[0])
        self._paths = paths
        self._bit_depth = bit_depth_of(first.format)
        self._alpha_reported = False
        self.info = SourceInfo(
            url=url,
            kind="images",
            video=VideoInfo(
                width=first.width,
                height=first.height,
                time_base=1 / IMAGE_RATE,
                frame_rate=IMAGE_RATE,
                pix_fmt=first.format.name,
                bit_depth=self._bit_depth,
                frame_count=len(paths),
                codec_name=first.format.name,
            ),
            image_names=tuple(p.name for p in paths),
        )

    def items(self) -> Iterator[VideoFrameItem]:
        """One RGB frame per image, in name order."""
        for index, path in enumerate(self._paths):
            frame = load_image(path)
            self._report_alpha(frame, path)
            try:
                array = frame_to_rgb(frame, self._bit_depth)
            except av.error.FFmpegError as e:
                raise SourceError(f"{path}: {frame.format.name} picture cannot be converted to RGB: {error_text(e)}") from e
            yield VideoFrameItem(index, index, 1 / IMAGE_RATE, 1, array, name=path.name)

    def _report_alpha(self, frame: av.VideoFrame, path: Path) -> None:
        if has_alpha(frame.format) and not self._alpha_reported:
            log.warning("%s has an alpha channel; it is dropped (reported once per source)", path)
            self._alpha_reported = True

    def close(self) -> None:
        """Nothing is held open between images."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
