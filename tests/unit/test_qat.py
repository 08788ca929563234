"""Quantization-aware training: the fake-quantized twin rounds as the int8 branch does, trains
the float network's own parameters, and a quantize_aware run ships plain float weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr_stream.config import load_train_config
from vsr_stream.errors import ConfigError
from vsr_stream.media.synth import enlarged_picture, write_images
from vsr_stream.models import build_model, load_weights
from vsr_stream.models.quantize import calibrate_fake_quant, fake_quantized, quantize_int8
from vsr_stream.train.run import run_training


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("fsrcnn-ps-56-y", 2, allow_random=True).eval()
    with torch.no_grad():
        net.net.tail.weight.mul_(20.0)  # a trained net's residual, not an untrained tail's near-silence
    return net


def _picture() -> torch.Tensor:
    return torch.from_numpy(enlarged_picture(40, 56, seed=3)).permute(2, 0, 1)[None].float() / 255


def test_the_twin_rounds_as_the_int8_branch_does():
    net = _net()
    twin, int8 = fake_quantized(net).eval(), quantize_int8(net)
    natural = _picture()  # inside the calibrated ranges: rounding noise of the same size
    beyond = natural * 1.6  # outside them: clipped the same way
    with torch.no_grad():
        error_twin, error_int8 = ((m(natural) - net(natural)).abs().mean() for m in (twin, int8))
        exact, simulated, rounded = net(beyond), twin(beyond), int8(beyond)
    assert error_int8 > 1e-4 and 0.5 < error_twin / error_int8 < 2.0
    assert (simulated - rounded).abs().mean() < 0.2 * (exact - rounded).abs().mean()


def test_the_twin_trains_the_float_networks_own_parameters():
    net = _net()
    keys = set(net.state_dict())
    for p in net.parameters():
        p.requires_grad_(True)
    twin = fake_quantized(net).train()
    assert all(a is b for a, b in zip(twin.parameters(), net.parameters()))
    twin(_picture()).mean().backward()
    assert net.net.tail.weight.grad is not None and net.net.body[0].weight.grad.abs().sum() > 0
    assert set(net.state_dict()) == keys  # net itself stays a plain network: its weights save as before


def test_recalibration_follows_the_weights():
    net = _net()
    twin = fake_quantized(net).eval()
    x = _picture()
    with torch.no_grad():
        net.net.tail.weight.mul_(3.0)  # the residual grows past the calibrated output range
        stale = (twin(x) - net(x)).abs().mean()
        calibrate_fake_quant(twin)
        fresh = (twin(x) - net(x)).abs().mean()
    assert fresh < 0.5 * stale


def test_quantize_aware_needs_trained_weights_to_start_from(tmp_path):
    cfg = {"name": "q", "scale": 2, "data": [str(tmp_path)], "branches": [{"model": "fsrcnn-ps-16-y", "quantize_aware": True}]}
    with pytest.raises(ConfigError, match="quantize_aware"):
        load_train_config(cfg)


def _sr_val(root, scale: int) -> str:
    """A tiny sr-val layout (Set5 and Set14, HR and MATLAB-bicubic LR) made of generated pictures."""
    from PIL import Image

    from vsr_stream.quality.evaluate import make_pairs_from_hr

    for k, name in enumerate(("Set5", "Set14")):
        (root / "hr" / name).mkdir(parents=True)
        Image.fromarray(enlarged_picture(48, 64, seed=k)).save(root / "hr" / name / "img.png")
        for picture, lr, hr in make_pairs_from_hr(root / "hr" / name, scale):
            for kind, img in (("HR", hr), ("LR", lr)):
                (root / name / f"x{scale}" / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / name / f"x{scale}" / kind / picture)
    return str(root)


def test_a_quantize_aware_run_ships_plain_float_weights(tmp_path):
    write_images(tmp_path / "imgs", [(96, 128)] * 4)
    base = {"scale": 2, "data": [str(tmp_path / "imgs")], "out_dir": str(tmp_path / "runs"), "lr_patch_px": 12,
            "batch": 8, "validate_every": 5, "checkpoint_every": 5, "patch_pool": 1000, "parallel": False}
    run_training(load_train_config({**base, "name": "f", "branches": [{"model": "fsrcnn-ps-16-y", "steps": 10, "lr": 3e-3}]}),
                 show_progress=False)
    start = tmp_path / "runs" / "f" / "branch0" / "weights.safetensors"
    summary = run_training(load_train_config({**base, "name": "q", "branches": [
        {"model": "fsrcnn-ps-16-y", "steps": 10, "lr": 1e-3, "init": str(start), "quantize_aware": True}]}),
        show_progress=False)
    assert np.isfinite(summary["branches"][0]["val_psnr_db"])
    qat, plain = build_model("fsrcnn-ps-16-y", 2, allow_random=True), build_model("fsrcnn-ps-16-y", 2, allow_random=True)
    load_weights(qat, tmp_path / "runs" / "q" / "branch0" / "weights.safetensors")  # the plain model's keys
    load_weights(plain, start)
    assert any(not torch.equal(a, b) for a, b in zip(qat.parameters(), plain.parameters()))  # it trained
    from vsr_stream.train.card import ship

    cfg = load_train_config({**base, "name": "q", "branches": [
        {"model": "fsrcnn-ps-16-y", "steps": 10, "lr": 1e-3, "init": str(start), "quantize_aware": True}]})
    card = ship(cfg, "q.toml", 0, "tiny-q8_x2", dest=tmp_path / "ship", val_root=_sr_val(tmp_path / "val", 2)).read_text()
    assert "int8 rounding simulated in every forward pass (quantization-aware)" in card
    assert "| int8 PSNR / SSIM | int8 cost |" in card and card.count(" dB |") == 4  # bf16 and int8 cost, 2 sets
