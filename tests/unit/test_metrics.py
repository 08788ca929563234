"""Y conversion, PSNR and SSIM by the SR protocol, checked against closed forms and a direct
2-D reference filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import correlate2d

from vsr_stream.errors import ModelInputError
from vsr_stream.quality.metrics import modcrop, psnr_y, rgb_to_y, ssim_y

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _noisy_pair(shape: tuple[int, ...] = (40, 36, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, size=shape), 0, 255).astype(np.uint8)
    return sr, hr


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s ssim_index written out with a 2-D window (fspecial + filter2 'valid')."""
    r = np.arange(11) - 5.0
    window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def f(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, window, mode="valid")

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    return float(np.mean((2 * mx * my + C1) * (2 * sxy + C2) / ((mx**2 + my**2 + C1) * (sxx + syy + C2))))


@pytest.mark.parametrize(("rgb", "y"), [
    ((0, 0, 0), 16.0), ((255, 255, 255), 235.0), ((255, 0, 0), 81.481), ((0, 255, 0), 144.553),
    ((0, 0, 255), 40.966), ((10, 20, 30), 16 + (654.81 + 2571.06 + 748.98) / 255),
])
def test_y_of_pure_colours(rgb, y):
    img = np.full((2, 3, 3), rgb, dtype=np.uint8)
    out = rgb_to_y(img)
    assert out.shape == (2, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, y, rtol=0, atol=1e-12)


def test_y_is_not_rounded_and_grey_is_its_own_y():
    assert rgb_to_y(np.full((1, 1, 3), (1, 0, 0), dtype=np.uint8))[0, 0] == pytest.approx(16 + 65.481 / 255)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(rgb_to_y(grey), grey.astype(np.float64))
    with pytest.raises(ModelInputError):
        rgb_to_y(np.zeros((3, 4, 4)))


def test_psnr_of_identical_images_is_inf():
    _, hr = _noisy_pair()
    assert psnr_y(hr, hr.copy(), 2) == math.inf


def test_psnr_of_a_known_mse():
    hr = np.full((20, 20), 100.0)
    assert psnr_y(hr + 5, hr, 0) == pytest.approx(10 * math.log10(255**2 / 25))
    # A grey-level step d on all three channels moves Y by d * 219 / 255.
    rgb = np.full((20, 20, 3), 100, dtype=np.uint8)
    mse = (10 * 219 / 255) ** 2
    assert psnr_y(rgb + 10, rgb, 3) == pytest.approx(10 * math.log10(255**2 / mse))


def test_shave_drops_the_border():
    sr, hr = _noisy_pair()
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr_y(sr, hr, 3) == math.inf
    assert ssim_y(sr, hr, 3) == 1.0
    assert psnr_y(sr, hr, 2) < 40


def test_ssim_of_identical_images_is_one():
    _, hr = _noisy_pair()
    assert ssim_y(hr, hr, 0) == pytest.approx(1.0, abs=1e-12)


def test_ssim_is_symmetric_and_below_one():
    sr, hr = _noisy_pair(seed=1)
    assert ssim_y(sr, hr, 2) == pytest.approx(ssim_y(hr, sr, 2), abs=1e-12)
    assert ssim_y(sr, hr, 2) < 0.99


def test_ssim_of_two_constants_is_the_luminance_term():
    a, b = 100.0, 140.0
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim_y(np.full((16, 16), a), np.full((16, 16), b), 0) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_a_direct_2d_reference():
    sr, hr = _noisy_pair(seed=2)
    expected = _reference_ssim(rgb_to_y(sr)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4])
    assert ssim_y(sr, hr, 4) == pytest.approx(expected, abs=1e-12)


def test_metrics_reject_mismatched_or_too_small_images():
    sr, hr = _noisy_pair()
    with pytest.raises(ModelInputError):
        psnr_y(sr[:-1], hr, 0)
    with pytest.raises(ModelInputError):
        ssim_y(sr[:14, :14], hr[:14, :14], 2)
    with pytest.raises(ModelInputError):
        psnr_y(sr[:4, :4], hr[:4, :4], 2)


def test_modcrop():
    img = np.zeros((13, 10, 3))
    assert modcrop(img, 4).shape == (12, 8, 3)
    assert modcrop(img[:, :, 0], 3).shape == (12, 9)
    assert modcrop(img, 1).shape == img.shape
