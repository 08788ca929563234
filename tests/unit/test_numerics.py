"""Branch numerics: "auto" precision from hardware and model card, card sidecars, memory layout, int8."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
import torch
from torch.ao.nn import quantized as nnq

from vsr_stream.config import BranchConfig, load_config
from vsr_stream.cpuinfo import cpu_flags
from vsr_stream.errors import ConfigError
from vsr_stream.media.synth import picture
from vsr_stream.models import build_model
from vsr_stream.models.inference import (
    BranchModel,
    CardNumbers,
    branch_card,
    card_sidecar_path,
    choose_auto_layout,
    choose_auto_precision,
    cpu_has_native_bf16,
    to_layout,
)
from vsr_stream.models.quantize import calibration_windows, quantize_int8
from vsr_stream.models import registry
from vsr_stream.models.registry import save_weights

PACKAGED_WEIGHTS_DIR = registry.SHIPPED_WEIGHTS_DIR  # read at import, before the fixtures move it


def _card(**costs: float) -> CardNumbers:
    return CardNumbers(model="fsrcnn-ps-16-y", scale=2, sha256="0" * 64, fp32_psnr_db={s: 30.0 for s in costs},
                       bf16_psnr_db={s: 30.0 + c for s, c in costs.items()}, bf16_cost_db=dict(costs))


# ---------------------------------------------------------------- auto precision

def test_auto_takes_bf16_with_native_hardware_and_a_cheap_card():
    choice = choose_auto_precision("cpu", True, "AVX512_BF16", _card(Set5=-0.02, Set14=-0.011))
    assert choice.precision == "bf16" and "0.020 dB" in choice.reason
    assert choose_auto_precision("cuda", True, "A100", _card(Set5=-0.01)).precision == "bf16"


@pytest.mark.parametrize("native, card, reason", [
    (False, _card(Set5=-0.001), "this CPU has no native bf16: AVX2"),
    (True, _card(Set5=-0.001, Set14=-0.021), "-0.021 dB on Set14"),
    (True, _card(Set5=+0.03), "+0.030 dB on Set5"),  # the bound is on the absolute cost
    (True, _card(), "records no bf16 cost"),
    (True, None, "no model card beside w.safetensors"),
])
def test_auto_keeps_fp32_and_says_why(native, card, reason):
    choice = choose_auto_precision("cpu", native, "AVX2", card, "no model card beside w.safetensors")
    assert choice.precision == "fp32" and reason in choice.reason


def test_native_bf16_is_read_from_torch_capability_or_cpu_flags():
    cpuinfo = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\nbugs\t\t: spectre\n"
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_has_native_bf16("AVX2", cpu_flags(cpuinfo))
    assert cpu_has_native_bf16("AMX", frozenset()) and cpu_has_native_bf16("AVX512_BF16", frozenset())
    assert not cpu_has_native_bf16("AVX512", cpu_flags("flags\t: avx2 avx512f avx512_vnni\n"))


def test_auto_resolves_and_logs_one_line(monkeypatch, caplog):
    monkeypatch.setattr("vsr_stream.models.inference.native_bf16", lambda device: (False, "AVX2"))
    with caplog.at_level(logging.INFO, logger="vsr_stream.models.inference"):
        branch = BranchModel(BranchConfig(model="fsrcnn-ps-16-y"), 2, allow_random=True)
    assert branch.precision == "fp32" and branch.dtype == torch.float32 and branch.fallback is None
    infos = [r.message for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["fsrcnn-ps-16-y x2: fp32 (this CPU has no native bf16: AVX2)"]


def _ship(model: str, scale: int, stem: str, bf16_cost_db: float) -> None:
    """Random weights of ``model`` in the (test's) shipped folder as ``stem``, with a card sidecar."""
    registry.SHIPPED_WEIGHTS_DIR.mkdir(exist_ok=True)
    weights = registry.SHIPPED_WEIGHTS_DIR / f"{stem}.safetensors"
    save_weights(build_model(model, scale, allow_random=True), weights)
    CardNumbers(model, scale, hashlib.sha256(weights.read_bytes()).hexdigest(), {"Set5": 30.0, "Set14": 27.0},
                {"Set5": 30.0 + bf16_cost_db, "Set14": 27.0}, {"Set5": bf16_cost_db, "Set14": 0.0},
                ).write(card_sidecar_path(weights))


def test_auto_on_native_hardware_follows_the_shipped_card(monkeypatch):
    monkeypatch.setattr("vsr_stream.models.inference.native_bf16", lambda device: (True, "AMX"))
    _ship("edsr-b4c32", 4, "cheap", bf16_cost_db=-0.02)
    _ship("edsr-b4c32", 2, "edsr-b4c32_x2", bf16_cost_db=-0.064)  # the model's default weights at x2
    _ship("fsrcnn-ps-16-y", 4, "thin", bf16_cost_db=-0.001)
    cheap = BranchModel(BranchConfig(model="edsr-b4c32", weights="@cheap"), 4, allow_random=False)
    costly = BranchModel(BranchConfig(model="edsr-b4c32"), 2, allow_random=False)
    random = BranchModel(BranchConfig(model="edsr-b4c32"), 3, allow_random=True)
    thin = BranchModel(BranchConfig(model="fsrcnn-ps-16-y", weights="@thin"), 4, allow_random=False)
    assert (cheap.precision, costly.precision, random.precision, thin.precision) == ("bf16", "fp32", "fp32", "bf16")
    assert next(cheap.module.parameters()).dtype == next(thin.module.parameters()).dtype == torch.bfloat16


# ---------------------------------------------------------------- card sidecars

def test_every_shipped_weights_file_has_a_matching_sidecar():
    # About the packaged files themselves (the fixtures hide them from every other test).
    weights = sorted(PACKAGED_WEIGHTS_DIR.glob("*.safetensors"))
    assert weights
    for path in weights:
        card = CardNumbers.read(card_sidecar_path(path))
        assert card.sha256 == hashlib.sha256(path.read_bytes()).hexdigest(), path.name
        assert set(card.bf16_cost_db) == set(card.fp32_psnr_db) == {"Set5", "Set14"}
        for s, cost in card.bf16_cost_db.items():
            # the PSNRs are rounded to 0.01 dB, the cost to 0.001 dB
            assert cost == pytest.approx(card.bf16_psnr_db[s] - card.fp32_psnr_db[s], abs=0.0101), path.name


def test_sidecar_round_trip_and_checks(tmp_path):
    weights = tmp_path / "mine.safetensors"
    save_weights(build_model("fsrcnn-ps-16-y", 2, allow_random=True), weights)
    branch = BranchConfig(model="fsrcnn-ps-16-y", weights=str(weights))
    assert branch_card(branch, 2) == (None, "no model card beside mine.safetensors")
    card = CardNumbers("fsrcnn-ps-16-y", 2, hashlib.sha256(weights.read_bytes()).hexdigest(),
                       {"Set5": 36.9}, {"Set5": 36.89}, {"Set5": -0.01})
    card.write(card_sidecar_path(weights))
    assert branch_card(branch, 2) == (card, "")
    assert "card of fsrcnn-ps-16-y x2" in branch_card(branch.model_copy(update={"model": "fsrcnn-ps-36-y"}), 2)[1]
    weights.write_bytes(weights.read_bytes() + b" ")
    assert "sha256 differs" in branch_card(branch, 2)[1]
    card_sidecar_path(weights).write_text('{"model": "fsrcnn-ps-16-y"}')
    assert "unreadable" in branch_card(branch, 2)[1]


# ---------------------------------------------------------------- layout

def test_auto_layout_rule():
    assert choose_auto_layout("fsrcnn", "cpu", "fp32") == "channels_last"
    assert choose_auto_layout("edsr", "cpu", "int8") == "channels_last"
    assert choose_auto_layout("interpolation", "cpu", "fp32") == "contiguous"
    assert choose_auto_layout("fsrcnn", "cuda", "bf16") == "channels_last"
    assert choose_auto_layout("fsrcnn", "cuda", "fp32") == "contiguous"


@pytest.mark.parametrize("model", ["fsrcnn-ps-36-y", "fsrcnn-16", "edsr-b4c32"])
def test_layouts_give_the_same_output(model):
    torch.manual_seed(0)
    net = build_model(model, 2, allow_random=True)
    x = torch.rand(2, 3, 19, 23, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        nchw = to_layout(net, "contiguous")(x)
        assert next(p for p in net.parameters() if p.ndim == 4).is_contiguous()
        nhwc = to_layout(net, "channels_last")(x)
        assert next(p for p in net.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(nchw, nhwc, rtol=0, atol=1e-5)


def test_branch_layouts_upscale_alike():
    windows = picture(0, 20, 24)[None]
    out = {}
    for layout in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        branch = BranchModel(BranchConfig(model="fsrcnn-ps-16", precision="fp32", layout=layout), 2, allow_random=True)
        assert branch.layout == layout
        out[layout] = branch.upscale(windows)
    assert out["contiguous"].flags.c_contiguous and out["channels_last"].flags.c_contiguous
    assert np.abs(out["contiguous"].astype(int) - out["channels_last"].astype(int)).max() <= 1


@pytest.mark.parametrize("model", ["fsrcnn-ps-56-m9p4-y", "fsrcnn-ps-36-t1-y", "bicubic"])
@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_a_phased_branch_gives_the_models_interleaved_output(model, dtype, peak, layout):
    """Clamping, rounding and converting the phases before the interleave gives the model's own output."""
    torch.manual_seed(0)
    branch = BranchModel(BranchConfig(model=model, precision="fp32", layout=layout), 4, allow_random=True)
    assert branch.phased
    windows = (picture(1, 15, 21).astype(np.int64) * peak // 255).astype(dtype)[None].repeat(2, axis=0)
    x = torch.from_numpy(windows.astype(np.float32) / peak).permute(0, 3, 1, 2)
    torch.manual_seed(0)  # the branch's random weights again
    with torch.inference_mode():
        expected = build_model(model, 4, allow_random=True).eval()(x)
    expected = expected.clamp(0, 1).mul(peak).round().permute(0, 2, 3, 1).numpy().astype(dtype)
    out = branch.upscale(windows)
    assert out.dtype == dtype and out.shape == (2, 60, 84, 3) and out.flags.c_contiguous
    assert np.abs(out.astype(np.int64) - expected.astype(np.int64)).max() <= 1  # float rounding at .5
    # float32 carries ~0.01 of a uint16 level of rounding error through either computation, so
    # there a value near .5 rounds either way far more often than at uint8
    assert (out != expected).mean() < (1e-3 if dtype == np.uint8 else 1e-2)


def test_ensembles_and_nets_without_a_skip_are_not_phased():
    assert not BranchModel(BranchConfig(model="fsrcnn-ps-16-y", self_ensemble=True), 2, allow_random=True).phased
    assert not BranchModel(BranchConfig(model="edsr-b4c32"), 2, allow_random=True).phased


# ---------------------------------------------------------------- int8

def _psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _smooth_picture(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * x + 2 * y), 0.5 + 0.3 * np.cos(4 * y), 0.3 + 0.5 * x * y], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def _random_weights(model: str, scale: int, last_conv: str, gain: float, path) -> str:
    """Random weights of ``model`` with its last convolution's weights times ``gain``, saved to ``path``.

    Sets the residual over the bicubic skip to a trained model's order: an untrained FSRCNN-PS adds
    almost none (its tail starts at std 0.001: int8 would have nothing to get wrong), an untrained
    EDSR one larger than the picture."""
    net = build_model(model, scale, allow_random=True)
    with torch.no_grad():
        net.get_submodule(last_conv).weight.mul_(gain)
    save_weights(net, path)
    return str(path)


@pytest.mark.parametrize("model, last_conv, gain", [("fsrcnn-ps-56-y", "net.tail", 20.0), ("edsr-b4c32", "tail", 0.1)])
def test_int8_is_close_to_fp32_on_a_smooth_picture(model, last_conv, gain, tmp_path):
    weights = _random_weights(model, 2, last_conv, gain, tmp_path / "w.safetensors")
    fp32, int8 = (BranchModel(BranchConfig(model=model, weights=weights, precision=p, layout="channels_last"),
                              2, allow_random=False) for p in ("fp32", "int8"))
    assert int8.precision == "int8" and int8.fallback is None
    assert any(isinstance(m, nnq.Conv2d) for m in int8.module.modules())
    windows = _smooth_picture()[None]
    a, b = fp32.upscale(windows), int8.upscale(windows)
    bicubic = BranchModel(BranchConfig(model="bicubic"), 2, allow_random=False).upscale(windows)
    assert a.shape == b.shape and b.dtype == np.uint8
    assert _psnr_db(a, bicubic) < 35.0  # the network adds a visible residual, which int8 must reproduce
    assert 40.0 < _psnr_db(a, b) < 80.0  # close, and really quantized (not bit-identical)


def test_int8_quantizes_transposed_convolutions_and_leaves_the_float_model_alone():
    torch.manual_seed(0)
    net = build_model("fsrcnn-16", 2, allow_random=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    q = quantize_int8(net)
    assert any(isinstance(m, nnq.ConvTranspose2d) for m in q.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = calibration_windows()[:2]
    with torch.inference_mode():
        assert (q(x) - net(x)).abs().max() < 0.05


def test_int8_calibration_is_deterministic():
    torch.manual_seed(0)
    net = build_model("fsrcnn-ps-16-y", 2, allow_random=True)
    x = calibration_windows()[:3]
    with torch.inference_mode():
        assert torch.equal(quantize_int8(net)(x), quantize_int8(net)(x))


def test_int8_refuses_models_without_convolutions():
    with pytest.raises(ConfigError, match="no convolutions"):
        BranchModel(BranchConfig(model="bicubic", precision="int8"), 2, allow_random=False)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_int8_on_cuda_is_a_config_error(device):
    with pytest.raises(ConfigError, match="int8 runs on the CPU only"):
        load_config({"upscale": {"branches": [{"model": "fsrcnn-ps-16-y", "device": device, "precision": "int8"}]}})


@pytest.mark.parametrize("field, value", [("precision", "fp8"), ("precision", "FP32"), ("layout", "nhwc")])
def test_invalid_numerics_are_rejected_by_config(field, value):
    with pytest.raises(ConfigError, match=f"upscale.branches.0.{field}"):
        load_config({"upscale": {"branches": [{"model": "fsrcnn-ps-16-y", field: value}]}})


def test_ship_writes_the_card_numbers(tmp_path):
    from vsr_stream.train.card import card_numbers

    weights = tmp_path / "w_x2.safetensors"
    save_weights(build_model("fsrcnn-ps-16-y", 2, allow_random=True), weights)
    scores = {"Set5": {"fp32": (36.91234, 0.95), "bf16": (36.87, 0.95)},
              "Set14": {"fp32": (32.6, 0.9), "bf16": (32.6, 0.9)}}
    card = card_numbers("fsrcnn-ps-16-y", 2, weights, scores)
    assert card.bf16_cost_db == {"Set5": -0.0423, "Set14": 0.0} and card.fp32_psnr_db["Set5"] == 36.9123
    card.write(card_sidecar_path(weights))
    assert branch_card(BranchConfig(model="fsrcnn-ps-16-y", weights=str(weights)), 2) == (card, "")


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])  # with and without optimize_for_inference on FSRCNNs
@pytest.mark.parametrize("model, self_ensemble", [("fsrcnn-ps-56-y", False), ("fsrcnn-36", False),
                                                  ("edsr-b6c32-asym", False), ("mdsr-b8c48", False),
                                                  ("fsrcnn-ps-16-y", True)])
def test_frozen_network_matches_eager_at_other_window_sizes(model, self_ensemble, capability, monkeypatch):
    """One trace on a small input serves every window size, with the eager network's output."""
    from vsr_stream.models.inference import BranchModel

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    branch = dict(model=model, precision="fp32", self_ensemble=self_ensemble)
    torch.manual_seed(0)
    frozen = BranchModel(BranchConfig(**branch), 3, allow_random=True)
    torch.manual_seed(0)
    eager = BranchModel(BranchConfig(**branch, freeze=False), 3, allow_random=True)
    assert frozen.frozen and not eager.frozen
    rng = np.random.default_rng(1)
    for shape in [(2, 17, 29, 3), (1, 40, 23, 3)]:
        windows = rng.integers(0, 256, shape, dtype=np.uint8)
        out_frozen, out_eager = frozen.upscale(windows), eager.upscale(windows)
        assert out_frozen.shape == (shape[0], shape[1] * 3, shape[2] * 3, 3)
        assert np.abs(out_frozen.astype(int) - out_eager.astype(int)).max() <= 1
        assert (out_frozen != out_eager).mean() < 0.01


def test_optimize_for_inference_only_for_fsrcnns_on_avx2():
    from vsr_stream.models.inference import choose_cpu_optimize

    assert choose_cpu_optimize("fsrcnn", "AVX2") and choose_cpu_optimize("fsrcnn", "avx2")
    assert not choose_cpu_optimize("fsrcnn", "AVX512")  # slower on the AVX-512 BF16 CPU
    assert not choose_cpu_optimize("edsr", "AVX2")  # slower there too
    assert not choose_cpu_optimize("fsrcnn", "DEFAULT") and not choose_cpu_optimize("mdsr", "AVX2")


def test_an_avx2_cpu_runs_an_fsrcnn_through_optimize_for_inference(monkeypatch):
    from vsr_stream.models import inference

    calls = []
    optimize = torch.jit.optimize_for_inference
    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda m: calls.append(1) or optimize(m))
    for capability, optimized_so_far in (("AVX2", 1), ("AVX512", 1)):  # the AVX-512 branch adds no call
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        net = inference.BranchModel(BranchConfig(model="fsrcnn-ps-16-y", precision="fp32"), 2, allow_random=True)
        assert net.frozen and len(calls) == optimized_so_far
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    inference.BranchModel(BranchConfig(model="edsr-b6c32-asym", precision="fp32"), 2, allow_random=True)
    assert len(calls) == 1  # EDSR: frozen, not optimized
