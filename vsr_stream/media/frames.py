"""Pictures between PyAV frames and RGB arrays, with the colour matrix and range honoured.

Decoding side: any decoded frame -> (H, W, 3) RGB array (uint8 or uint16, full scale).
Encoding side: RGB array -> frame in the encoder's pixel format, converted with the source's
matrix and range and tagged with its colour description.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

from vsr_stream.media.colour import RANGE_FULL, RGB_COLORSPACE, known_range, rgb_format, sws_matrix
from vsr_stream.media.items import VideoInfo

# Accurate rounding and full chroma interpolation: the default swscale fast paths cost up
# to a few code values and smear chroma edges, which an SR model would then upscale.
_QUALITY = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def bit_depth_of(fmt: av.VideoFormat) -> int:
    """8 when every component of ``fmt`` fits in 8 bits, else 16 (the array dtype to use)."""
    return 8 if max(c.bits for c in fmt.components) <= 8 else 16


def has_alpha(fmt: av.VideoFormat) -> bool:
    """Whether ``fmt`` carries an alpha channel (which RGB conversion drops)."""
    return any(c.is_alpha for c in fmt.components)


def frame_to_rgb(frame: av.VideoFrame, bit_depth: int) -> np.ndarray:
    """``frame`` as an (H, W, 3) RGB array: uint8 for ``bit_depth`` 8, else uint16 on the full
    0-65535 scale. Converted with the frame's matrix and range tags (the decoder fills them
    from the bitstream, else from the container); untagged YUV is taken as BT.601 limited
    range, FFmpeg's default."""
    rgb = frame.reformat(
        format=rgb_format(bit_depth),
        src_colorspace=sws_matrix(frame.colorspace),
        src_color_range=known_range(frame.color_range),
        dst_color_range=RANGE_FULL,
        interpolation=_QUALITY,
    )
    return rgb.to_ndarray()


def rgb_to_frame(array: np.ndarray, pix_fmt: str, info: VideoInfo, size: tuple[int, int] | None = None) -> av.VideoFrame:
    """An (H, W, 3) uint8/uint16 RGB array as a frame in ``pix_fmt``, resized to ``size``
    (h, w) when given, converted with ``info``'s matrix and range and carrying its colour tags."""
    depth = 8 if array.dtype == np.uint8 else 16
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=rgb_format(depth))
    target_is_rgb = av.VideoFormat(pix_fmt).is_rgb
    h, w = size if size is not None else (None, None)
    frame = rgb.reformat(
        width=w,
        height=h,
        format=pix_fmt,
        dst_colorspace=None if target_is_rgb else sws_matrix(info.colorspace),
        dst_color_range=RANGE_FULL if target_is_rgb else known_range(info.color_range),
        interpolation=_QUALITY,
    )
    _tag(frame, info, target_is_rgb)
    return frame


def _tag(frame: av.VideoFrame, info: VideoInfo, is_rgb: bool) -> None:
    if info.color_primaries is not None:
        frame.color_primaries = info.color_primaries
    if info.color_trc is not None:
        frame.color_trc = info.color_trc
    if is_rgb:
        frame.colorspace = RGB_COLORSPACE
    elif info.colorspace is not None:
        frame.colorspace = info.colorspace


def needs_even(pix_fmt: str) -> tuple[bool, bool]:
    """(even height needed, even width needed) for a chroma-subsampled ``pix_fmt``."""
    fmt = av.VideoFormat(pix_fmt)
    return fmt.chroma_height(16) < 16, fmt.chroma_width(16) < 16


def pad_to(array: np.ndarray, h: int, w: int) -> np.ndarray:
    """``array`` grown to (h, w) by replicating its last row/column (no-op when it fits)."""
    dh, dw = h - array.shape[0], w - array.shape[1]
    if dh == 0 and dw == 0:
        return array
    return np.pad(array, ((0, dh), (0, dw), (0, 0)), mode="edge")
