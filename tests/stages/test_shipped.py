"""The shipped weights: every file has its model card, the presets load them without random
weights at every scale, and with them the default tiling stays seamless (>= 40 dB against the
same network on the whole frame; the default context covers the receptive radius, so in fact
the tiles match exactly)."""

from __future__ import annotations

import re

import pytest

from tests.stages.conftest import psnr
from tests.stages.test_tile_path import textured, whole_frame
from vsr_stream.api import check_models
from vsr_stream.config import load_config
from vsr_stream.models import build_model
from vsr_stream.models.macs import macs_per_output_pixel
from vsr_stream.models.registry import SHIPPED_WEIGHTS_DIR
from vsr_stream.resources import preset_names
from vsr_stream.train.card import LICENCE

SHIPPED = sorted(SHIPPED_WEIGHTS_DIR.glob("*.safetensors"))


def test_weights_ship_with_a_card_each():
    assert SHIPPED, f"no weights in {SHIPPED_WEIGHTS_DIR}"
    for path in SHIPPED:
        card = path.with_suffix(".md")
        assert card.is_file(), f"{path.name} has no model card"
        text = card.read_text(encoding="utf-8")
        for needed in (LICENCE, "vsr-stream train", "Wall time", "bf16", "steps"):
            assert needed in text, f"{card.name} lacks {needed!r}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_card_states_the_models_multiply_adds_as_counted_now(path):
    text = path.with_suffix(".md").read_text(encoding="utf-8")
    model = re.search(r"\| model \| `([^`]+)`", text).group(1)
    scale = int(re.search(r"\| scale \| ×(\d)", text).group(1))
    macs = macs_per_output_pixel(build_model(model, scale, weights=str(path)), scale)
    assert f"| multiply-adds per output pixel (whole frame) | {macs:,.0f} |" in text, path.name


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_presets_load_trained_weights_at_every_scale(preset, scale):
    cfg = load_config(preset, {"scale": scale})
    assert not cfg.upscale.allow_random_weights
    check_models(cfg)  # raises if a learned branch has no trained weights for this scale


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_default_tiling_is_seamless_with_the_shipped_weights(inline, scale):
    cfg = load_config("default", {"scale": scale})
    frame = textured(150, 170)  # several default tiles per axis
    for branch in cfg.upscale.branches:
        # every tile alone (no merged windows, which would make this frame one window): the
        # seams of the default tile plan itself
        branch = branch.model_copy(update={"merge_px": 0})
        one = cfg.model_copy(update={
            "classify": cfg.classify.model_copy(update={"tvat_thresholds": []}),
            "upscale": cfg.upscale.model_copy(update={"branches": [branch]}),
        })
        [out] = inline(one).run([frame])
        ref = whole_frame(one, frame)
        assert ref.std() > 20
        assert psnr(out.arrays[0], ref) >= 40.0, f"{branch.model} x{scale}"
