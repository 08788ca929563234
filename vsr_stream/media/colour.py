"""Colour tags: FFmpeg's enum values (as stored in VideoInfo) to what swscale needs.

Trap: PyAV's ``reformat(src_colorspace=...)`` takes swscale's ``SWS_CS_*`` numbers, not
``AVColorSpace`` values; they agree for BT.709 (1) but not for SMPTE 170M (6) or
BT.2020 (9 vs 10 for the constant-luminance variant), so every conversion goes through here.
"""

from __future__ import annotations

from av.video.reformatter import ColorRange, Colorspace

# AVColorSpace value -> swscale matrix. Unlisted values (RGB, unspecified, ...) map to None,
# which lets swscale use the frame's own tag or its default (BT.601).
_SWS_MATRIX = {
    1: Colorspace.ITU709,
    4: Colorspace.FCC,
    5: Colorspace.ITU601,
    6: Colorspace.SMPTE170M,
    7: Colorspace.SMPTE240M,
    9: Colorspace.BT2020,
    10: Colorspace.BT2020,
}

RGB_COLORSPACE = 0  # AVCOL_SPC_RGB
RANGE_LIMITED = int(ColorRange.MPEG)
RANGE_FULL = int(ColorRange.JPEG)


def sws_matrix(colorspace: int | None) -> Colorspace | None:
    """The swscale matrix for an ``AVColorSpace`` value, or None to keep swscale's choice."""
    return _SWS_MATRIX.get(colorspace) if colorspace is not None else None


def known_range(color_range: int | None) -> int | None:
    """``color_range`` if it is limited or full, else None (unspecified)."""
    return color_range if color_range in (RANGE_LIMITED, RANGE_FULL) else None


def rgb_format(bit_depth: int) -> str:
    """The packed RGB pixel format of arrays with this bit depth (8 -> rgb24, 16 -> rgb48le)."""
    return "rgb24" if bit_depth == 8 else "rgb48le"


def unspecified_to_none(value: int, unspecified: int) -> int | None:
    """FFmpeg's 'unspecified' enum value as None, anything else unchanged."""
    return None if value == unspecified else int(value)
