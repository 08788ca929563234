"""Luma-only networks: the net upscales BT.601 Y, chroma (Cb, Cr) is upscaled bicubically.

RGB in, RGB out (the model contract), so a Y network is a drop-in branch. Quality is scored on
Y, and the first and last layers of a Y network cost a third of an RGB one's multiply-adds.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vsr_stream.models import edsr
from vsr_stream.models.fsrcnn import FSRCNNPS, N_MAP_LAYERS, SCALES, ps_receptive_radius_px
from vsr_stream.models.interp import Bicubic, phases_to_image
from vsr_stream.models.registry import ModelDescriptor

# BT.601 on [0, 1]: ycbcr = RGB_TO_YCBCR @ rgb + OFFSET (the SR papers' Y, studio range).
RGB_TO_YCBCR = torch.tensor([[65.481, 128.553, 24.966],
                             [-37.797, -74.203, 112.0],
                             [112.0, -93.786, -18.214]], dtype=torch.float64) / 255.0
OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
Y_GAIN = 255.0 / 219.0  # what one unit of Y adds to each of R, G and B


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 Y of (N, 3, H, W) RGB on [0, 1] as (N, 1, H, W), without the constant 16/255 offset."""
    return torch.einsum("c,nchw->nhw", RGB_TO_YCBCR[0].to(rgb.dtype), rgb)[:, None]


class YChannel(nn.Module):
    """Wraps ``net`` ((N, 1, H, W) → (N, 1, H*s, W*s), Y on [0, 1]) into an RGB model.

    With ``chroma_guide``, ``net`` reads (N, 3, H, W): Y, then Cb and Cr centred on 0, and still
    returns Y only. Chroma edges then inform the luma (the picture's colour carries structure a
    luma-only net never sees), while the output chroma stays bicubic.

    When ``net`` is a bicubic skip plus a learned residual (:class:`FSRCNNPS`), the colour
    transforms fold away: bicubic interpolation is linear and keeps constants, so converting the
    bicubic Y, Cb, Cr back to RGB gives the bicubic RGB, and Y's residual adds to R, G and B
    alike times ``Y_GAIN`` (the Y column of the inverse BT.601 matrix is 255/219 in every row).
    The output is then ``bicubic(rgb) + Y_GAIN * residual`` (:meth:`phases`,
    :meth:`residual_phases`, :attr:`phase_output`): no colour transform and no per-channel work
    at HR but the bicubic upscale and one sum.
    """

    def __init__(self, net: nn.Module, scale: int, chroma_guide: bool = False) -> None:
        super().__init__()
        self.net, self.scale, self.chroma_guide = net, scale, chroma_guide
        self.phase_output = isinstance(net, FSRCNNPS)
        # the chroma's bicubic or, with a phase output, the RGB's as phases
        self.bicubic = Bicubic(scale, interleave=not self.phase_output)
        self.register_buffer("to_ycc", RGB_TO_YCBCR.float(), persistent=False)
        self.register_buffer("to_rgb", torch.linalg.inv(RGB_TO_YCBCR).float(), persistent=False)
        self.register_buffer("offset", OFFSET.float().view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.phase_output:
            return phases_to_image(self.phases(x), self.scale)
        ycc = self._net_input(x, chroma=True)
        y = self.net(ycc if self.chroma_guide else ycc[:, :1]) - self.offset[:, :1].to(x.dtype)
        return torch.einsum("ij,njhw->nihw", self.to_rgb.to(x.dtype), torch.cat([y, self.bicubic(ycc[:, 1:])], dim=1))

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        """The output as phase-major phases (N, 3 * s * s, H, W) (see :func:`interp.bicubic_phases`);
        only when :attr:`phase_output`."""
        n, _, h, w = x.shape
        s2 = self.scale * self.scale
        rgb = self.bicubic(x).view(n, s2, 3, h, w) + self.residual_phases(x).view(n, s2, 1, h, w)
        return rgb.view(n, 3 * s2, h, w)

    def residual_phases(self, x: torch.Tensor) -> torch.Tensor:
        """What the network adds to the bicubic RGB, the same for R, G and B, as phase-major phases
        (N, s * s, H, W): ``phases(x)`` is ``bicubic_phases(x)`` plus this on every channel. Only
        when :attr:`phase_output`."""
        return self.net.residual(self._net_input(x, chroma=self.chroma_guide)) * Y_GAIN

    def _net_input(self, x: torch.Tensor, chroma: bool) -> torch.Tensor:
        """Y with its 16/255 offset (the luma net's input), then with ``chroma`` Cb and Cr centred on 0."""
        y_offset = self.offset[:, :1].to(x.dtype)
        if not chroma:
            return luma(x) + y_offset
        ycc = torch.einsum("ij,njhw->nihw", self.to_ycc.to(x.dtype), x)
        return torch.cat([ycc[:, :1] + y_offset, ycc[:, 1:]], dim=1)


def fsrcnn_ps_y(scale: int, feature_channels: int, n_map_layers: int = N_MAP_LAYERS, n_point_layers: int = 0,
                tail_kernel: int = 3, chroma_guide: bool = False) -> YChannel:
    """A luma FSRCNN-PS; with ``chroma_guide`` it also reads the LR chroma (2 guide channels)."""
    net = FSRCNNPS(scale, feature_channels, n_map_layers=n_map_layers, image_channels=1,
                   guide_channels=2 if chroma_guide else 0, n_point_layers=n_point_layers, tail_kernel=tail_kernel)
    return YChannel(net, scale, chroma_guide=chroma_guide)


def edsr_y(scale: int, blocks: int, channels: int) -> YChannel:
    return YChannel(edsr.EDSR(blocks, channels, scale, image_channels=1, light_tail=True), scale)


def _fsrcnn_ps_descriptor(name: str, scales: tuple[int, ...], description: str, d: int, m: int = N_MAP_LAYERS,
                          p: int = 0, tail_kernel: int = 3, chroma_guide: bool = False) -> ModelDescriptor:
    """A luma FSRCNN-PS entry whose builder and receptive radius come from the same widths and depths."""
    builder = partial(fsrcnn_ps_y, feature_channels=d, n_map_layers=m, n_point_layers=p, tail_kernel=tail_kernel,
                      chroma_guide=chroma_guide)
    return ModelDescriptor(name=name, scales=scales, builder=builder, learned=True, supports_half=True,
                           receptive_radius_px=ps_receptive_radius_px(m, tail_kernel), min_size_px=1,
                           description=description, family="fsrcnn")


# The multiply-add counts below are those of the colour transforms before the phase output
# (YChannel): since it, every net here costs 9.4 MACs per HR px less (the YCbCr -> RGB matrix
# per HR pixel and 6 of the 9 per LR pixel are gone), e.g. the x4 default 1,489 where it says 1,498.
DESCRIPTORS = tuple(
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-y", SCALES, f"FSRCNN-PS d={d} on BT.601 luma, bicubic chroma", d)
    for d in (16, 36, 56)
) + tuple(
    # Deeper mappings for the same width, each at the scales where it still fits the
    # multiply-add budget of an RGB FSRCNN-56 (see docs/quality.md): m = 6 and 8 at every
    # scale, m = 9 at x4 (1,462 of 1,506), m = 12 at x2 and x3 (at x4 it would cost 1,705),
    # m = 14 at x2 (5,785 of 5,967). Narrower and deeper for the same budget (d = 40, made from
    # the d = 56 nets by init_layers = "prune"): m = 12 at x4 (1,512: 6 over since the colour
    # transforms are counted; not shipped), m = 14 at x3 (2,652 of 2,667).
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-m{m}-y", scales, f"FSRCNN-PS d={d}, m={m} on BT.601 luma, bicubic chroma", d, m)
    for d, m, scales in ((56, 6, SCALES), (56, 8, SCALES), (56, 9, (4,)), (56, 12, (2, 3)), (56, 14, (2,)),
                           (40, 12, (4,)), (40, 14, (3,)))
) + tuple(
    # Shallow mappings for the flat classes of a routed preset: one 3x3 mapping layer (radius 4,
    # so their windows carry 4 px of context, not 7). With a pixel-shuffle tail the mapping is most of
    # FSRCNN's work at every width, so a narrow branch is only cheap if its mapping is short:
    # at x4, 332 / 573 MACs per HR px for d = 16 / 36 against 575 / 816 at m = 4 (docs/quality.md).
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-m1-y", SCALES,
                          f"FSRCNN-PS d={d}, m=1 on BT.601 luma, bicubic chroma (a routed flat-class branch)", d, 1)
    for d in (16, 36)
) + tuple(
    # A 1x1 tail for the narrow classes of a routed preset: at x4 a 3x3 tail is 324 of a 36-wide
    # net's 816 MACs per HR px and 504 of a 56-wide one's 1,057; 1x1 makes them 528 and 610 (radius
    # 6, one less). The mapping keeps its depth, which the flat tiles were measured to need.
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-t1-y", SCALES,
                          f"FSRCNN-PS d={d} with a 1x1 tail on BT.601 luma, bicubic chroma (a routed narrow-class branch)",
                          d, tail_kernel=1)
    for d in (36, 56)
) + tuple(
    # The same nets reading the LR chroma too (a 1x1 conv into the first features: +7 / +12 / +28
    # multiply-adds per output pixel at x4 / x3 / x2, still inside the budget); weights of the
    # luma-only net of the same depth load into them as the same function (init_layers = "matching").
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-m{m}-yc", scales,
                          f"FSRCNN-PS d={d}, m={m} on BT.601 luma guided by the LR chroma, bicubic chroma", d, m,
                          chroma_guide=True)
    for d, m, scales in ((56, 9, (4,)), (56, 12, (2, 3)))
) + tuple(
    # The default nets with p pointwise (1x1, 12 -> 12) mapping layers after the 3x3 ones, in the
    # budget left over: x4 m = 9 + 4 (1,498 of 1,506), x3 m = 12 + 4 (2,659 of 2,667); made from
    # the default nets by init_layers = "deepen" (identity 1x1 layers).
    _fsrcnn_ps_descriptor(f"fsrcnn-ps-{d}-m{m}p{p}-y", scales,
                          f"FSRCNN-PS d={d}, m={m} + {p} pointwise on BT.601 luma, bicubic chroma", d, m, p)
    for d, m, p, scales in ((56, 9, 4, (4,)), (56, 12, 4, (3,)))
) + tuple(
    ModelDescriptor(
        name=f"edsr-b{b}c{c}-y", scales=SCALES, builder=partial(edsr_y, blocks=b, channels=c),
        learned=True, supports_half=True, receptive_radius_px=edsr.receptive_radius_px(b, light_tail=True), min_size_px=1,
        description=f"EDSR-style residual net, {b} blocks x {c} channels, pixel-shuffle tail, on BT.601 luma, "
        "bicubic chroma",
        family="edsr",
    )
    for b, c in ((6, 32), (8, 48))
)
