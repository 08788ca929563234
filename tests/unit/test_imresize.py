"""MATLAB bicubic imresize: kernel values, contributions worked out by hand, shapes, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.quality.imresize import contributions, cubic, imresize, resize_axis, to_uint8

# The a = -0.5 cubic at the four distances a x2 resize samples (by hand from Keys' formula).
CUBIC_AT = {0.25: 0.8671875, 0.75: 0.2265625, 1.25: -0.0703125, 1.75: -0.0234375}


def _rng_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_cubic_values_and_support():
    for x, value in CUBIC_AT.items():
        assert cubic(np.array([x, -x])) == pytest.approx([value, value], abs=0)
    assert cubic(np.array([0.0, 1.0, 2.0, 2.5])).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_upscale_x2_contributions_by_hand():
    # Output 1 (1-based) sits at u = 0.75: taps at inputs -1, 0, 1, 2 (1-based) at distances
    # 1.75, 0.75, 0.25, 1.25; inputs -1 and 0 are off the edge and clamp to input 1.
    weights, indices = contributions(4, 8, 2.0)
    assert weights.shape == (8, 4)  # the 6 taps' outer two are zero for every output: dropped
    assert weights[0] == pytest.approx([CUBIC_AT[1.75], CUBIC_AT[0.75], CUBIC_AT[0.25], CUBIC_AT[1.25]], abs=0)
    assert indices[0].tolist() == [0, 0, 0, 1]
    # Output 4 sits at u = 2.25, fully inside: inputs 1..4 at distances 1.25, 0.25, 0.75, 1.75.
    assert weights[3] == pytest.approx([CUBIC_AT[1.25], CUBIC_AT[0.25], CUBIC_AT[0.75], CUBIC_AT[1.75]], abs=0)
    assert indices[3].tolist() == [0, 1, 2, 3]


def test_upscale_x2_values_by_hand():
    row = np.array([[10.0, 20.0, 40.0, 80.0]])
    out = imresize(row, output_shape=(1, 8))
    assert out[0, 0] == pytest.approx((CUBIC_AT[1.75] + CUBIC_AT[0.75] + CUBIC_AT[0.25]) * 10 + CUBIC_AT[1.25] * 20)
    assert out[0, 3] == pytest.approx(23.828125)  # -0.0703125*10 + 0.8671875*20 + 0.2265625*40 - 0.0234375*80


def test_downscale_x2_contributions_are_the_widened_kernel():
    # Shrinking by 2 widens the kernel to 8 px: h(d) = cubic(d / 2) / 2 at d = 3.5, 2.5, ..., -3.5,
    # and the two all-zero outer taps are dropped. Output 1 is at u = 1.5, so inputs -2..5
    # (1-based) clamp to 0, 0, 0, 0, 1, 2, 3, 4 (0-based): not mirrored.
    weights, indices = contributions(8, 4, 0.5)
    half = [CUBIC_AT[1.75] / 2, CUBIC_AT[1.25] / 2, CUBIC_AT[0.75] / 2, CUBIC_AT[0.25] / 2]
    assert weights.shape == (4, 8)
    assert weights[0] == pytest.approx(half + half[::-1], abs=1e-15)
    assert indices[0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
    assert indices[-1].tolist() == [3, 4, 5, 6, 7, 7, 7, 7]


def test_weights_rows_sum_to_one():
    for n_in, n_out, scale in [(13, 4, 0.25), (10, 30, 3.0), (9, 5, 5 / 9)]:
        weights, _ = contributions(n_in, n_out, scale)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_scale_one_is_identity(dtype):
    img = _rng_image((9, 7, 3)).astype(dtype)
    out = imresize(img, 1.0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0])
def test_constant_stays_constant(scale):
    np.testing.assert_allclose(imresize(np.full((24, 36), 123.25), scale), 123.25, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(imresize(np.full((24, 36, 3), 77, dtype=np.uint8), scale), 77)


@pytest.mark.parametrize(("h", "w", "scale", "expected"), [
    (13, 13, 1 / 4, (4, 4)), (13, 10, 1 / 3, (5, 4)), (7, 5, 2.5, (18, 13)), (512, 512, 1 / 3, (171, 171)),
    (255, 249, 1 / 3, (85, 83)),
])
def test_output_shape_is_ceil_of_scaled_size(h, w, scale, expected):
    assert imresize(np.zeros((h, w)), scale).shape == expected
    assert imresize(np.zeros((h, w, 3), dtype=np.uint8), scale).shape == (*expected, 3)


def test_output_shape_argument_scales_each_axis():
    img = _rng_image((12, 20))
    assert imresize(img, output_shape=(5, 31)).shape == (5, 31)


def test_float_input_is_not_rounded_and_keeps_range():
    img = np.linspace(-300.0, 500.0, 16 * 16).reshape(16, 16).astype(np.float32)
    out = imresize(img, 0.5)
    assert out.dtype == np.float64
    assert np.any(out != np.round(out))
    assert out.min() < 0 and out.max() > 255


def test_uint8_is_rounded_after_each_axis_shrinking_axis_first():
    # MATLAB: the smaller scale first, uint8 between the passes. Built by hand from one-axis passes.
    img = _rng_image((16, 10), seed=3)
    w0, i0 = contributions(16, 8, 0.5)
    w1, i1 = contributions(10, 20, 2.0)
    expected = to_uint8(resize_axis(to_uint8(resize_axis(img, 0, w0, i0)), 1, w1, i1))
    np.testing.assert_array_equal(imresize(img, output_shape=(8, 20)), expected)
    other_order = to_uint8(resize_axis(to_uint8(resize_axis(img, 1, w1, i1)), 0, w0, i0))
    assert np.any(other_order != expected)  # the order is observable, so the test can fail


def test_to_uint8_rounds_half_away_from_zero_and_saturates():
    assert to_uint8(np.array([0.5, 1.5, 2.5, 254.49, -3.0, 300.0])).tolist() == [1, 2, 3, 254, 0, 255]


def test_channels_are_resized_independently():
    img = _rng_image((20, 14, 3), seed=5)
    out = imresize(img, 0.5)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], imresize(img[:, :, c], 0.5))


def test_bad_arguments():
    with pytest.raises(ConfigError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ConfigError):
        imresize(np.zeros((4, 4)), 2.0, output_shape=(8, 8))
    with pytest.raises(ConfigError):
        imresize(np.zeros((4, 4)), -1.0)
    with pytest.raises(ModelInputError):
        imresize(np.zeros((4, 4), dtype=np.int16), 2.0)
    with pytest.raises(ModelInputError):
        imresize(np.zeros((2, 4, 4, 3)), 2.0)
