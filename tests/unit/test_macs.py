"""Unit tests of vsr_stream.models.macs: MAC counts checked against hand counts and brute force."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.errors import ModelInputError
from vsr_stream.models import edsr, fsrcnn, interp
from vsr_stream.models.macs import count_macs, macs_per_output_pixel, tiled_overhead


def test_fsrcnn_56_x4_matches_hand_count() -> None:
    per_lr_px = 5 * 5 * 3 * 56 + 56 * 12 + 4 * 9 * 12 * 12 + 12 * 56
    # The 9x9 stride-4 deconv: per axis 3 taps hit an input sample for one output phase in 4
    # and 2 for the others, so 9/4 on average; times 56 input and 3 output channels.
    deconv_per_hr_px = 56 * 3 * (9 / 4) ** 2
    by_hand = per_lr_px / 16 + deconv_per_hr_px
    assert by_hand == pytest.approx(1521, abs=1)
    counted = macs_per_output_pixel(fsrcnn.FSRCNN(4, 56), 4)
    assert counted == pytest.approx(by_hand, rel=0.03)
    assert counted < by_hand  # border outputs have fewer taps landing on the input


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_one_by_one_tail_saves_eight_ninths_of_the_tail(scale: int) -> None:
    from vsr_stream import models

    d, out = 36, scale * scale  # a luma net's tail writes scale^2 sub-pixels per LR pixel
    three, one = (macs_per_output_pixel(models.build_model(name, scale, allow_random=True), scale, h=12, w=10)
                  for name in ("fsrcnn-ps-36-y", "fsrcnn-ps-36-t1-y"))
    assert three - one == pytest.approx(8 * d * out / scale**2, rel=1e-12)  # 8 of the 9 taps, per LR pixel


@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_matches_hand_count(scale: int, asymmetric: bool) -> None:
    blocks, c = 2, 8
    block_conv = (3 + 3) * c * c if asymmetric else 9 * c * c
    upsampler = 9 * c * 4 * c * (1 + 4) if scale == 4 else 9 * c * c * scale * scale  # x4: LR conv + 2x-level conv
    per_lr_px = 9 * 3 * c + blocks * 2 * block_conv + 9 * c * c + upsampler
    per_hr_px = 9 * c * 3 + 16 * 3  # tail conv, bicubic skip
    net = edsr.edsr(blocks, c, scale, asymmetric=asymmetric)
    assert macs_per_output_pixel(net, scale, h=12, w=10) == pytest.approx(per_lr_px / scale**2 + per_hr_px, rel=1e-12)


def _brute_force_transposed_macs(layer: nn.ConvTranspose2d, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Per output position, the kernel taps whose source lies on an input sample, times the channels."""
    taps = 0
    for oy, ox in itertools.product(range(out_hw[0]), range(out_hw[1])):
        for ty, tx in itertools.product(range(layer.kernel_size[0]), range(layer.kernel_size[1])):
            sources = [
                (o + layer.padding[axis] - t * layer.dilation[axis], layer.stride[axis], in_hw[axis])
                for axis, (o, t) in enumerate(((oy, ty), (ox, tx)))
            ]
            taps += all(offset % stride == 0 and 0 <= offset // stride < size for offset, stride, size in sources)
    return taps * layer.out_channels * layer.in_channels


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(2, 3, 9, stride=4, padding=4, output_padding=3),
        nn.ConvTranspose2d(2, 3, (5, 3), stride=(3, 2), padding=(2, 0), output_padding=(1, 1), dilation=(1, 2)),
    ],
)
def test_transposed_conv_counts_only_taps_on_input_samples(layer: nn.ConvTranspose2d) -> None:
    x = torch.rand(1, 2, 4, 5)
    out_hw = tuple(layer(x).shape[-2:])
    assert count_macs(layer, x) == _brute_force_transposed_macs(layer, (4, 5), out_hw)


def test_transposed_conv_count_equals_products_of_ones() -> None:
    # With unit weights and input and no bias, each output element sums exactly its non-zero products.
    layer = nn.ConvTranspose2d(2, 3, 9, stride=3, padding=4, output_padding=2, bias=False)
    nn.init.ones_(layer.weight)
    x = torch.ones(1, 2, 6, 7)
    assert count_macs(layer, x) == round(layer(x).sum().item())


def test_interpolation_costs_its_taps() -> None:
    assert macs_per_output_pixel(interp.Bicubic(3), 3) == 16 * 3
    assert macs_per_output_pixel(interp.Nearest(2), 2) == 0

    class Bilinear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    assert macs_per_output_pixel(Bilinear(), 2) == 4 * 3


def test_linear_counts_in_features_per_output() -> None:
    assert count_macs(nn.Linear(5, 7), torch.rand(3, 5)) == 3 * 7 * 5


def test_uncountable_layer_raises() -> None:
    with pytest.raises(ModelInputError, match="BatchNorm2d"):
        macs_per_output_pixel(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)), 1)


def test_counting_leaves_no_hooks_behind() -> None:
    net = fsrcnn.FSRCNN(2, 16)
    macs_per_output_pixel(net, 2)
    assert all(not layer._forward_hooks for layer in net.modules())


def test_pixel_shuffle_tail_is_cheaper_than_deconv_at_x2() -> None:
    assert macs_per_output_pixel(fsrcnn.FSRCNNPS(2, 56), 2) < macs_per_output_pixel(fsrcnn.FSRCNN(2, 56), 2)


def test_tiled_overhead_of_one_tile_is_window_over_frame() -> None:
    # One tile: its window (core plus context, clamped to the frame) is the whole frame.
    assert tiled_overhead(tile_px=64, overlap_px=8, context_px=8, h=50, w=60) == 1.0


def test_tiled_overhead_counts_context_of_every_tile() -> None:
    # 2x2 tiles of 50 px, each window 50 + 2*5 = 60 px on a side.
    assert tiled_overhead(tile_px=50, overlap_px=0, context_px=5, h=100, w=100) == pytest.approx(4 * 60 * 60 / 100**2)


def test_einsum_counts_the_plain_contraction_and_refuses_an_ellipsis() -> None:
    class Mix(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("ij,njhw->nihw", torch.ones(4, 3), x)

    class Ellipsis(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("ij,nj...->ni...", torch.ones(4, 3), x)

    assert count_macs(Mix(), torch.zeros(2, 3, 5, 7)) == 4 * 3 * 2 * 5 * 7
    with pytest.raises(ModelInputError, match="ellipsis"):
        count_macs(Ellipsis(), torch.zeros(2, 3, 5, 7))
