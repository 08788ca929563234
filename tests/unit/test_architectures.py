"""Unit tests of the FSRCNN-PS, EDSR and MDSR architectures and the geometric self-ensemble."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream import models
from vsr_stream.errors import ModelInputError
from vsr_stream.models import edsr, fsrcnn, mdsr, ychannel
from vsr_stream.models.ensemble import SelfEnsemble, with_self_ensemble
from vsr_stream.models.registry import save_weights

NEW_DESCRIPTORS = (
    *(desc for desc in fsrcnn.DESCRIPTORS if desc.name.startswith("fsrcnn-ps-")),
    *edsr.DESCRIPTORS,
    *mdsr.DESCRIPTORS,
    *(desc for desc in ychannel.DESCRIPTORS if desc.name.startswith("edsr-") or desc.name.endswith("-t1-y")),
)
NEW_MODEL_SCALES = [(desc.name, scale) for desc in NEW_DESCRIPTORS for scale in desc.scales]
# edsr-b16c64 is built from the same layers as edsr-b4c32/b6c32/b8c48 (only the block count
# differs, and the radius' 2 px per block is proven tight across those depths); in float64 it
# would cost as much as every other tightness case together, so it gets the sufficiency check only.
TIGHT_MODEL_SCALES = [(name, scale) for name, scale in NEW_MODEL_SCALES if name not in ("edsr-b16c64", "edsr-b8c48-y")]
INNER_PX = 8
MARGIN_PX = 2




def _build(name: str, scale: int) -> nn.Module:
    return models.build_model(name, scale, allow_random=True)


def test_every_new_model_is_registered() -> None:
    names = {desc.name for desc in NEW_DESCRIPTORS}
    assert {"fsrcnn-ps-16", "fsrcnn-ps-36", "fsrcnn-ps-56", "edsr-b6c32-asym", "mdsr-b8c48", "edsr-b6c32-y"} <= names
    assert names <= set(models.names())


@pytest.mark.parametrize(("name", "scale"), NEW_MODEL_SCALES)
def test_forward_odd_size_gives_scaled_output(name: str, scale: int) -> None:
    out = _build(name, scale)(torch.rand(2, 3, 13, 17))
    assert out.shape == (2, 3, 13 * scale, 17 * scale)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def _tile_errors(net: nn.Module, scale: int, contexts_px: list[int], dtype: torch.dtype = torch.float32) -> list[float]:
    """Max |difference| between an inner LR region upscaled in a whole frame and in a tile, per context.

    The tile is the inner region plus ``context_px`` on every side. The frame leaves
    ``MARGIN_PX`` beyond the widest tile, so no tile touches the frame edge (where its zero
    padding would match the frame's by luck).
    """
    start_px = max(contexts_px) + MARGIN_PX
    frame = torch.rand(1, 3, 2 * start_px + INNER_PX, 2 * start_px + INNER_PX, dtype=dtype)
    inner = slice(start_px * scale, (start_px + INNER_PX) * scale)
    from_frame = net(frame)[..., inner, inner]
    errors = []
    for context_px in contexts_px:
        window = slice(start_px - context_px, start_px + INNER_PX + context_px)
        in_tile = slice(context_px * scale, (context_px + INNER_PX) * scale)
        from_tile = net(frame[..., window, window])[..., in_tile, in_tile]
        errors.append((from_frame - from_tile).abs().max().item())
    return errors


def _shift_weights(net: nn.Module, tap: int) -> nn.Module:
    """Make every conv average its input channels through one corner tap (``tap`` 0 or -1), in float64.

    All features stay positive (so ReLU and PReLU pass them), each conv passes its whole signal
    shifted as far as its kernel reaches, and the longest chain of shifts reaches exactly the
    receptive radius: the worst case for tile context, toward the top-left (0) or bottom-right (-1).
    """
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d):
            layer.weight.zero_()
            layer.weight[:, :, tap, tap] = 1.0 / layer.in_channels
            if layer.bias is not None:
                layer.bias.zero_()
    return net.double()


@pytest.mark.parametrize(("name", "scale"), NEW_MODEL_SCALES)
def test_receptive_radius_is_enough_with_random_weights(name: str, scale: int) -> None:
    net = _build(name, scale)
    if isinstance(net, fsrcnn.FSRCNNPS):
        net.tail.weight.mul_(100.0)  # init std 0.001: make a wrong pixel stand far above float noise
    assert _tile_errors(net, scale, [models.get(name).receptive_radius_px])[0] < 1e-5


@pytest.mark.parametrize("tap", [0, -1])
@pytest.mark.parametrize(("name", "scale"), TIGHT_MODEL_SCALES)
def test_receptive_radius_is_tight(name: str, scale: int, tap: int) -> None:
    net = _shift_weights(_build(name, scale), tap)
    radius_px = models.get(name).receptive_radius_px
    enough, one_short = _tile_errors(net, scale, [radius_px, radius_px - 1], torch.float64)
    assert enough < 1e-5
    assert one_short > 1e-3


def test_radius_formulas() -> None:
    assert fsrcnn.ps_receptive_radius_px() == 7
    assert fsrcnn.ps_receptive_radius_px(tail_kernel=1) == 6
    assert [edsr.receptive_radius_px(blocks) for blocks in (4, 6, 8, 16)] == [12, 16, 20, 36]
    assert mdsr.receptive_radius_px(8) == 28
    assert models.get("edsr-b8c48-asym").receptive_radius_px == models.get("edsr-b8c48").receptive_radius_px


def _kernel_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [layer.kernel_size for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def test_one_by_one_tail_is_the_only_difference_from_the_3x3_one() -> None:
    narrow, plain = _build("fsrcnn-ps-36-t1-y", 4), _build("fsrcnn-ps-36-y", 4)
    assert _kernel_sizes(narrow.net.tail) == [(1, 1)] and _kernel_sizes(plain.net.tail) == [(3, 3)]
    assert _kernel_sizes(narrow.net.body) == _kernel_sizes(plain.net.body)
    with pytest.raises(ModelInputError, match="tail_kernel"):
        fsrcnn.FSRCNNPS(4, 16, tail_kernel=5)


def test_asymmetric_blocks_use_3x1_then_1x3_convs_only() -> None:
    net = edsr.edsr(blocks=3, channels=8, scale=2, asymmetric=True)
    for block in net.body[:-1]:
        assert _kernel_sizes(block) == [(3, 1), (1, 3), (3, 1), (1, 3)]
    plain = edsr.edsr(blocks=3, channels=8, scale=2)
    assert all(size == (3, 3) for size in _kernel_sizes(plain))
    assert _kernel_sizes(net.head) == _kernel_sizes(net.tail) == [(3, 3)]


def test_asymmetric_registered_model_has_no_3x3_in_its_blocks() -> None:
    net = _build("edsr-b6c32-asym", 3)
    blocks = [module for module in net.modules() if isinstance(module, edsr.ResBlock)]
    assert len(blocks) == 6
    assert all((3, 3) not in _kernel_sizes(block) for block in blocks)


def test_residual_block_scales_its_residual() -> None:
    x = torch.rand(1, 4, 5, 6)
    assert torch.equal(edsr.ResBlock(4, res_scale=0.0)(x), x)
    block = edsr.ResBlock(4, res_scale=0.1)
    torch.testing.assert_close(block(x), x + 0.1 * block.body(x))


def test_edsr_rejects_unsupported_scale() -> None:
    with pytest.raises(ModelInputError, match="scales 2, 3, 4"):
        edsr.edsr(blocks=1, channels=4, scale=5)


def test_asymmetric_needs_3x3_kernels() -> None:
    with pytest.raises(ModelInputError, match="3x3"):
        edsr.ResBlock(4, kernel_px=5, asymmetric=True)


def test_fsrcnn_ps_starts_close_to_bicubic() -> None:
    x = torch.rand(1, 3, 9, 11)
    out = _build("fsrcnn-ps-56", 3)(x)
    bicubic = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)
    assert (out - bicubic).abs().max().item() < 0.05


def test_mdsr_one_state_dict_serves_every_scale(tmp_path) -> None:
    path = tmp_path / "mdsr.safetensors"
    at_x2 = _build("mdsr-b8c48", 2)
    save_weights(at_x2, path)
    torch.manual_seed(1)
    at_x4 = models.build_model("mdsr-b8c48", 4, weights=path)
    x = torch.rand(1, 3, 7, 10)
    out = at_x4(x)
    assert out.shape == (1, 3, 28, 40)
    at_x2.set_scale(4)
    assert torch.equal(out, at_x2(x))


def test_mdsr_state_dict_holds_every_scale_branch() -> None:
    keys = _build("mdsr-b8c48", 3).state_dict().keys()
    for scale in (2, 3, 4):
        assert any(key.startswith(f"pre_process.{scale}.") for key in keys)
        assert any(key.startswith(f"upsample.{scale}.") for key in keys)


def test_mdsr_set_scale_rejects_scale_without_branch() -> None:
    net = mdsr.MDSR(blocks=1, channels=4, scale=2)
    with pytest.raises(ModelInputError, match="scales"):
        net.set_scale(5)
    assert net.scale == 2


@pytest.mark.parametrize("name", ["nearest", "bicubic"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_self_ensemble_leaves_equivariant_model_unchanged(name: str, scale: int) -> None:
    net = models.build_model(name, scale)
    x = torch.rand(2, 3, 7, 12)
    torch.testing.assert_close(SelfEnsemble(net)(x), net(x), atol=1e-6, rtol=0)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(x, k, (-2, -1)) for k in range(4)]
    return turns + [torch.flip(turned, (-1,)) for turned in turns]


def test_self_ensemble_of_random_net_differs_and_is_equivariant() -> None:
    net = _build("edsr-b4c32", 2)
    ensemble = with_self_ensemble(net)
    x = torch.rand(1, 3, 9, 14)
    out = ensemble(x)
    assert out.shape == (1, 3, 18, 28)
    assert (out - net(x)).abs().max().item() > 1e-3
    # Averaging over the whole group makes the result commute with every element of it.
    for transformed_x, transformed_out in zip(_dihedral(x), _dihedral(out), strict=True):
        torch.testing.assert_close(ensemble(transformed_x), transformed_out, atol=1e-5, rtol=0)


def test_with_self_ensemble_keeps_eval_mode() -> None:
    assert not with_self_ensemble(_build("fsrcnn-ps-16", 2)).training


