"""PSNR and SSIM on the Y channel, the way SR papers compute them.

Y is BT.601 luma in float64, never rounded; ``shave`` pixels are cut from every border
first (by convention the scale factor). SSIM is Wang et al.'s: an 11x11 Gaussian window
with sigma 1.5, 'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255, the mean of the map.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from vsr_stream.errors import ModelInputError

PEAK = 255.0
SSIM_WINDOW_PX = 11
SSIM_SIGMA_PX = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_Y_FROM_RGB = np.array([65.481, 128.553, 24.966]) / 255.0  # for R, G, B on 0-255


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, float64 on 16-235.

    ``img`` is (H, W, 3) RGB or (H, W) grey, uint8 or float on 0-255. A grey image is
    returned as is (as float64): it already is the Y the protocol measures.
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ModelInputError(f"rgb_to_y: expected (H, W, 3) RGB or (H, W) grey, got shape {arr.shape}")
    return 16.0 + arr @ _Y_FROM_RGB


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """``img`` cut at the bottom and right to the largest multiple of ``scale`` in h and w."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def shaved_y_pair(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    """Y of ``sr`` and ``hr`` with ``shave`` px cut from each border; ModelInputError if the
    shapes differ or nothing is left."""
    if np.shape(sr) != np.shape(hr):
        raise ModelInputError(f"SR and HR differ in shape: {np.shape(sr)} vs {np.shape(hr)}")
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    if shave:
        ys, yh = ys[shave:-shave, shave:-shave], yh[shave:-shave, shave:-shave]
    if ys.size == 0:
        raise ModelInputError(f"nothing left of a {np.shape(hr)[:2]} image after shaving {shave} px")
    return ys, yh


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """PSNR in dB (peak 255) between the Y of ``sr`` and ``hr``; inf when they are equal."""
    ys, yh = shaved_y_pair(sr, hr, shave)
    mse = float(np.mean((ys - yh) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(PEAK * PEAK / mse)


def gaussian_taps(size_px: int = SSIM_WINDOW_PX, sigma_px: float = SSIM_SIGMA_PX) -> np.ndarray:
    """1-D Gaussian taps summing to 1; their outer product is MATLAB's
    ``fspecial('gaussian', size_px, sigma_px)``, so SSIM filters separably."""
    r = np.arange(size_px) - (size_px - 1) / 2
    g = np.exp(-(r * r) / (2 * sigma_px * sigma_px))
    return g / g.sum()


def filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``filter2(outer(taps, taps), img, 'valid')`` for odd-length ``taps``: (H - n + 1, W - n + 1)."""
    r = len(taps) // 2
    blurred = correlate1d(correlate1d(img, taps, axis=0), taps, axis=1)
    return blurred[r : img.shape[0] - r, r : img.shape[1] - r]


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """Mean SSIM between the Y of ``sr`` and ``hr`` (Wang et al.; see the module docstring).
    The shaved image must be at least 11x11."""
    ys, yh = shaved_y_pair(sr, hr, shave)
    if min(ys.shape) < SSIM_WINDOW_PX:
        raise ModelInputError(
            f"ssim_y: need at least {SSIM_WINDOW_PX}x{SSIM_WINDOW_PX} px after shaving, got {ys.shape}")
    return float(np.mean(ssim_map(ys, yh)))


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The SSIM map of two float64 (H, W) images, 'valid' part only: (H - 10, W - 10)."""
    taps = gaussian_taps()
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return filter_valid(a, taps)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
