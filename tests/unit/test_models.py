"""Unit tests of vsr_stream.models: every registered model runs, tile radii are proven, weights load safely."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from vsr_stream import models
from vsr_stream.errors import ConfigError, DuplicateModelError, ModelInputError, UnknownModelError
from vsr_stream.models import fsrcnn, registry
from vsr_stream.models.dtypes import learned_layers_to
from vsr_stream.models.registry import load_weights, save_weights

ALL_MODEL_SCALES = [(desc.name, scale) for desc in models.descriptors() for scale in desc.scales]
HALF_MODEL_SCALES = [
    (desc.name, scale) for desc in models.descriptors() if desc.supports_half for scale in desc.scales
]
INNER_START_PX = 16
INNER_PX = 8




def _build(name: str, scale: int) -> torch.nn.Module:
    return models.build_model(name, scale, allow_random=True)


def _loud(net: torch.nn.Module) -> torch.nn.Module:
    """Scale FSRCNN's deconv (init std 0.001) up so that a wrong pixel is far above float noise."""
    if isinstance(net, fsrcnn.FSRCNN):
        net.upsample.weight.mul_(100.0)
    return net


@pytest.mark.parametrize(("name", "scale"), ALL_MODEL_SCALES)
def test_forward_odd_size_gives_scaled_finite_float32(name: str, scale: int) -> None:
    out = _build(name, scale)(torch.rand(2, 3, 13, 17))
    assert out.shape == (2, 3, 13 * scale, 17 * scale)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "scale"), ALL_MODEL_SCALES)
def test_forward_accepts_min_size(name: str, scale: int) -> None:
    size_px = models.get(name).min_size_px
    out = _build(name, scale)(torch.rand(1, 3, size_px, size_px))
    assert out.shape == (1, 3, size_px * scale, size_px * scale)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "scale"), HALF_MODEL_SCALES)
def test_half_precision_matches_float32(name: str, scale: int, dtype: torch.dtype) -> None:
    net = _build(name, scale)
    x = torch.rand(1, 3, 13, 17)
    reference = net(x)
    out = net.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), reference, atol=3e-2, rtol=0)


@pytest.mark.parametrize(("name", "scale"), HALF_MODEL_SCALES)
def test_learned_layers_in_bf16_keep_float32_out_and_lose_less_than_a_whole_cast(name: str, scale: int) -> None:
    torch.manual_seed(1)
    net = _build(name, scale)
    x = torch.rand(1, 3, 13, 17)
    reference = net(x)
    whole = copy.deepcopy(net).to(torch.bfloat16)(x.bfloat16()).float()
    mixed = learned_layers_to(net, torch.bfloat16)(x)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, atol=3e-2, rtol=0)
    rms = {k: float(((out - reference) ** 2).mean().sqrt()) for k, out in (("whole", whole), ("mixed", mixed))}
    assert rms["mixed"] <= rms["whole"] + 1e-7


@pytest.mark.parametrize("name", ["fsrcnn-ps-36", "fsrcnn-ps-56-m9-y", "edsr-b6c32", "mdsr-b8c48"])
def test_with_bf16_layers_the_bicubic_skip_and_the_sum_stay_float32(name: str) -> None:
    """A zero residual leaves exactly the float32 bicubic; a whole-model cast rounds it to bf16."""
    scale = 4
    net = _build(name, scale)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    x = torch.rand(1, 3, 13, 17)
    bicubic = net(x)
    assert torch.equal(learned_layers_to(copy.deepcopy(net), torch.bfloat16)(x), bicubic)
    assert not torch.equal(net.to(torch.bfloat16)(x.bfloat16()).float(), bicubic)


def _tile_error(net: torch.nn.Module, scale: int, radius_px: int) -> float:
    """Max |difference| between an 8x8 LR region upscaled in a whole frame and in a tile with radius_px context."""
    start_px = max(INNER_START_PX, radius_px + 1)  # the tile must not touch the frame edge
    frame = torch.rand(1, 3, 2 * start_px + INNER_PX, 2 * start_px + INNER_PX)
    lo, hi = start_px - radius_px, start_px + INNER_PX + radius_px
    inner = slice(start_px * scale, (start_px + INNER_PX) * scale)
    in_tile = slice(radius_px * scale, (radius_px + INNER_PX) * scale)
    from_frame = net(frame)[..., inner, inner]
    from_tile = net(frame[..., lo:hi, lo:hi])[..., in_tile, in_tile]
    return (from_frame - from_tile).abs().max().item()


@pytest.mark.parametrize(("name", "scale"), ALL_MODEL_SCALES)
def test_receptive_radius_is_enough(name: str, scale: int) -> None:
    net = _loud(_build(name, scale))
    assert _tile_error(net, scale, models.get(name).receptive_radius_px) < 1e-5


TIGHT_RADII = [("fsrcnn-16", scale, fsrcnn.receptive_radius_px(scale)) for scale in fsrcnn.SCALES] + [
    ("bicubic", scale, 2) for scale in models.get("bicubic").scales
]


@pytest.mark.parametrize(("name", "scale", "radius_px"), TIGHT_RADII)
def test_receptive_radius_is_tight(name: str, scale: int, radius_px: int) -> None:
    net = _loud(_build(name, scale))
    assert _tile_error(net, scale, radius_px) < 1e-5
    assert _tile_error(net, scale, radius_px - 1) > 1e-3


def test_fsrcnn_descriptor_radius_is_worst_scale() -> None:
    assert [fsrcnn.receptive_radius_px(scale) for scale in (2, 3, 4)] == [8, 8, 7]
    for name in ("fsrcnn-16", "fsrcnn-36", "fsrcnn-56"):
        assert models.get(name).receptive_radius_px == 8


def test_fsrcnn_init_follows_paper() -> None:
    net = _build("fsrcnn-56", 2)
    first_conv = net.body[0]
    assert first_conv.weight.std().item() == pytest.approx((2 / (56 * 5 * 5)) ** 0.5, rel=0.1)
    assert net.upsample.weight.std().item() == pytest.approx(1e-3, rel=0.1)
    assert not net.upsample.bias.any() and not first_conv.bias.any()


def test_build_model_is_eval_without_grad() -> None:
    net = _build("fsrcnn-16", 2)
    assert not net.training
    assert not any(param.requires_grad for param in net.parameters())


def test_duplicate_registration_raises() -> None:
    original = models.get("bicubic")
    with pytest.raises(DuplicateModelError, match="bicubic"):
        models.register(original)
    assert models.get("bicubic") is original


def test_unknown_name_raises_lookup_error_listing_known_names() -> None:
    with pytest.raises(UnknownModelError, match="fsrcnn-56") as info:
        models.get("edsr")
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownModelError):
        models.build_model("edsr", 2)


@pytest.mark.parametrize("scale", [5, 1, 2.0])
def test_unsupported_scale_raises(scale: object) -> None:
    with pytest.raises(ModelInputError, match="scales"):
        models.build_model("bicubic", scale)


def test_learned_model_without_weights_raises_unless_random_allowed(caplog) -> None:
    with pytest.raises(ConfigError, match="no trained weights"):
        models.build_model("fsrcnn-36", 3)
    with caplog.at_level(logging.WARNING, logger="vsr_stream.models.registry"):
        models.build_model("fsrcnn-36", 3, allow_random=True)
    assert "random" in caplog.text


def test_weights_for_interpolation_model_raise(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no weights"):
        models.build_model("bicubic", 2, weights=tmp_path / "x.safetensors")


def test_safetensors_roundtrip_gives_identical_output(tmp_path) -> None:
    path = tmp_path / "fsrcnn.safetensors"
    original = _build("fsrcnn-16", 3)
    save_weights(original, path)
    torch.manual_seed(1)
    loaded = models.build_model("fsrcnn-16", 3, weights=path)
    x = torch.rand(1, 3, 11, 9)
    assert torch.equal(loaded(x), original(x))


def test_shipped_weights_are_used_when_present(tmp_path) -> None:
    original = _build("fsrcnn-16", 2)
    registry.SHIPPED_WEIGHTS_DIR.mkdir()
    save_weights(original, registry.shipped_weights_path("fsrcnn-16", 2))
    torch.manual_seed(1)
    loaded = models.build_model("fsrcnn-16", 2)
    x = torch.rand(1, 3, 5, 6)
    assert torch.equal(loaded(x), original(x))


@pytest.mark.parametrize("wrap", [None, "state_dict", "params"])
def test_torch_state_dict_loads_weights_only(tmp_path, wrap: str | None) -> None:
    original = _build("fsrcnn-16", 4)
    state = original.state_dict()
    path = tmp_path / "fsrcnn.pth"
    torch.save(state if wrap is None else {wrap: state, "epoch": 7}, path)
    torch.manual_seed(1)
    loaded = models.build_model("fsrcnn-16", 4, weights=path)
    x = torch.rand(1, 3, 6, 5)
    assert torch.equal(loaded(x), original(x))


def test_save_weights_requires_safetensors_suffix(tmp_path) -> None:
    with pytest.raises(ConfigError, match=".safetensors"):
        save_weights(_build("fsrcnn-16", 2), tmp_path / "w.pt")


def _write_garbage(path) -> None:
    path.write_bytes(b"definitely not a weights file" * 8)


def _write_truncated_torch(path) -> None:
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])


def _write_pickled_module(path) -> None:
    torch.save({"w": torch.nn.Linear(2, 2)}, path)


CORRUPT_FILES = {
    "garbage.safetensors": _write_garbage,
    "garbage.pt": _write_garbage,
    "empty.pth": lambda path: path.write_bytes(b""),
    "truncated.pt": _write_truncated_torch,
    "module.pt": _write_pickled_module,
}


@pytest.mark.parametrize("filename", CORRUPT_FILES)
def test_corrupt_weights_file_raises_config_error(tmp_path, filename: str) -> None:
    path = tmp_path / filename
    CORRUPT_FILES[filename](path)
    with pytest.raises(ConfigError, match=filename) as info:
        load_weights(_build("fsrcnn-16", 2), path)
    assert info.value.__cause__ is not None


def test_missing_weights_file_raises_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        models.build_model("fsrcnn-16", 2, weights=tmp_path / "absent.safetensors")


def test_weights_of_another_shape_raise_config_error(tmp_path) -> None:
    path = tmp_path / "fsrcnn16.safetensors"
    save_weights(_build("fsrcnn-16", 2), path)
    with pytest.raises(ConfigError, match="shape"):
        models.build_model("fsrcnn-36", 2, weights=path)


def test_weights_with_wrong_keys_raise_config_error(tmp_path) -> None:
    state = _build("fsrcnn-16", 2).state_dict()
    state["extra"] = state.pop("upsample.bias")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"missing keys \['upsample.bias'\]; unexpected keys \['extra'\]"):
        models.build_model("fsrcnn-16", 2, weights=path)


def test_file_without_tensors_raises_config_error(tmp_path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"lr": 0.1}, path)
    with pytest.raises(ConfigError, match="dict of tensors"):
        models.build_model("fsrcnn-16", 2, weights=path)


@pytest.mark.parametrize("scale", models.get("nearest").scales)
def test_nearest_equals_numpy_repeat(scale: int) -> None:
    lr = np.random.default_rng(0).integers(0, 256, size=(2, 3, 7, 9)).astype(np.float32)
    expected = lr.repeat(scale, axis=2).repeat(scale, axis=3)
    out = models.build_model("nearest", scale)(torch.from_numpy(lr)).numpy()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("scale", models.get("bicubic").scales)
def test_bicubic_of_constant_is_constant(scale: int) -> None:
    out = models.build_model("bicubic", scale)(torch.full((1, 3, 5, 7), 0.37))
    torch.testing.assert_close(out, torch.full_like(out, 0.37), atol=1e-6, rtol=0)
