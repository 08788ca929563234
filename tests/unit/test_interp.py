"""The polyphase bicubic equals PyTorch's bicubic kernel, edges included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr_stream.errors import ModelInputError
from vsr_stream.models.interp import Bicubic, bicubic_add, bicubic_nhwc, bicubic_upsample, phase_taps
from vsr_stream.models.macs import count_macs


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 2, 5), (1, 3, 17, 23), (1, 2, 40, 9)])
def test_matches_torch_bicubic(scale, shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape) + scale))
    want = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    got = bicubic_upsample(x, scale)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4, rtol=0)  # 3e-5 at x3: torch's float32 1/3


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 2, 5), (1, 3, 17, 23), (3, 1, 40, 9)])
def test_channels_last_bicubic_matches_torch_bicubic(scale, shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape) + scale))
    want = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    got = bicubic_nhwc(nhwc, scale)
    assert got.shape == want.shape and got.is_contiguous()
    assert torch.allclose(got, want, atol=1e-4, rtol=0)
    assert torch.equal(nhwc, x.permute(0, 2, 3, 1))  # the input is left as it was


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 2, 5, 3), (1, 17, 23, 3), (1, 40, 9, 1)])
def test_channels_last_bicubic_adds_a_phased_residual_to_every_channel(scale, shape):
    g = torch.Generator().manual_seed(sum(shape) + scale)
    nhwc = torch.rand(*shape, generator=g)
    n, h, w, c = shape
    phases = torch.randn(n, scale * scale, h, w, generator=g)
    residual = F.pixel_shuffle(phases, scale).permute(0, 2, 3, 1)  # (N, sH, sW, 1): phase i*s+j at (s*y+i, s*x+j)
    want = bicubic_nhwc(nhwc, scale) + 255.0 * residual
    got = bicubic_nhwc(nhwc, scale, phases, alpha=255.0)
    assert got.shape == (n, h * scale, w * scale, c) and got.is_contiguous()
    assert torch.allclose(got, want, atol=1e-3, rtol=0)
    with pytest.raises(ModelInputError, match="residual phases"):
        bicubic_nhwc(nhwc, scale, phases[:, 1:])


def test_phase_taps_sum_to_one_and_use_at_most_four_taps():
    for scale in (2, 3, 4):
        taps = phase_taps(scale)
        assert torch.allclose(taps.sum(dim=1), torch.ones(scale, dtype=torch.float64))
        assert ((taps != 0).sum(dim=1) <= 4).all()


def test_counted_as_sixteen_macs_per_output_value():
    x = torch.rand(1, 3, 8, 10)
    assert count_macs(Bicubic(4), x) == 16 * 3 * 32 * 40


def test_half_precision_runs_in_that_dtype():
    x = torch.rand(1, 3, 6, 7).bfloat16()
    y = bicubic_upsample(x, 2)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), bicubic_upsample(x.float(), 2), atol=2e-2)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dtype,top", [(torch.uint8, 255), (torch.uint16, 65535)])
def test_bicubic_add_is_the_base_plus_the_bicubic_change_rounded_and_clamped(scale, dtype, top):
    g = torch.Generator().manual_seed(scale)
    change = torch.randint(-top // 4, top // 4, (9, 13, 3), generator=g, dtype=torch.int32)
    base = torch.randint(0, top + 1, (9 * scale, 13 * scale, 3), generator=g, dtype=torch.int32).to(dtype)
    got = bicubic_add(base, change, scale)
    up = F.interpolate(change.double().permute(2, 0, 1)[None], scale_factor=scale, mode="bicubic", align_corners=False)
    want = (base.double() + up[0].permute(1, 2, 0)).round().clamp(0, top)
    assert got.dtype == dtype and got.shape == base.shape
    assert ((want == 0) | (want == top)).any(), "the clamp must be exercised"
    diff = (got.double() - want).abs()
    assert diff.max() <= 1 and (diff > 0).double().mean() < 0.01  # ties at float32 rounding only


def test_bicubic_add_leaves_a_float_change_as_it_was():
    change = torch.full((3, 4, 3), 2.0)
    out = bicubic_add(torch.zeros(6, 8, 3, dtype=torch.uint8), change, 2)
    assert (out == 2).all() and (change == 2.0).all()


def test_bicubic_add_refuses_mismatched_shapes_and_float_bases():
    with pytest.raises(ModelInputError, match="bicubic_add"):
        bicubic_add(torch.zeros(8, 8, 3, dtype=torch.uint8), torch.zeros(3, 4, 3), 2)
    with pytest.raises(ModelInputError, match="bicubic_add"):
        bicubic_add(torch.zeros(8, 8, 3), torch.zeros(4, 4, 3), 2)
