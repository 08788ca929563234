"""Per-scale config tables and shipped-weights references."""

from __future__ import annotations

import pytest

from vsr_stream.config import load_config
from vsr_stream.errors import ConfigError
from vsr_stream.models import build_model, registry, save_weights

PER_SCALE = {
    "scale": 4,
    "tiling": {"tile_px": 32},
    "x2": {"tiling": {"tile_px": 48}},
    "x4": {"tiling": {"tile_px": 64}, "classify": {"tvat_thresholds": [5.0]},
           "upscale": {"branches": [{"model": "bicubic"}, {"model": "nearest"}]}},
}


def test_the_table_of_the_final_scale_is_merged():
    assert load_config(PER_SCALE).tiling.tile_px == 64
    assert load_config(PER_SCALE).n_classes == 2
    two = load_config(PER_SCALE, {"scale": 2})
    assert two.tiling.tile_px == 48 and two.n_classes == 1
    assert load_config(PER_SCALE, {"scale": 3}).tiling.tile_px == 32  # no x3 table: the base


def test_environment_and_arguments_win_over_the_scale_table():
    cfg = load_config(PER_SCALE, environ={"VSR_STREAM_TILING__TILE_PX": "40"})
    assert cfg.tiling.tile_px == 40
    assert load_config(PER_SCALE, {"tiling": {"tile_px": 24}}).tiling.tile_px == 24


def test_a_bad_scale_table_is_a_config_error():
    with pytest.raises(ConfigError, match="x4"):
        load_config({"x4": 7})
    with pytest.raises(ConfigError, match="tile_pix"):
        load_config({"x4": {"tiling": {"tile_pix": 3}}})


def test_the_default_preset_resolves_at_every_scale():
    for scale in (2, 3, 4):
        cfg = load_config("default", {"scale": scale})
        assert cfg.scale == scale and cfg.n_classes == len(cfg.classify.tvat_thresholds) + 1


def test_a_files_top_level_wins_over_the_defaults_scale_table(tmp_path, monkeypatch):
    # A default with x4 tables (another network and context at x4): a file read over it sets its
    # own top level for every scale, and the default's x4 table must not override that.
    import vsr_stream.config as config

    default = {"scale": 4, "tiling": {"tile_px": 96, "context_px": 7},
               "upscale": {"branches": [{"model": "bicubic"}]},
               "x4": {"tiling": {"context_px": 9}, "upscale": {"branches": [{"model": "nearest"}]}}}
    read = config.read_config_file
    monkeypatch.setattr(config, "read_config_file", lambda name: default if name == "default" else read(name))
    assert load_config("default").tiling.context_px == 9
    assert load_config("default", {"scale": 2}).tiling.context_px == 7
    own = tmp_path / "own.toml"
    own.write_text('[tiling]\ncontext_px = 12\n\n[[upscale.branches]]\nmodel = "fsrcnn-ps-16"\n')
    for scale in (2, 3, 4):
        cfg = load_config(str(own), {"scale": scale})
        assert cfg.tiling.context_px == 12 and [b.model for b in cfg.upscale.branches] == ["fsrcnn-ps-16"]
        assert cfg.tiling.tile_px == 96  # the rest inherited
    inherit = tmp_path / "inherit.toml"
    inherit.write_text("[encode]\ncrf = 20\n")
    assert [b.model for b in load_config(str(inherit)).upscale.branches] == ["nearest"]  # the default's x4 table


def test_presets_keep_their_own_tiling_at_every_scale():
    assert load_config("quality", {"scale": 4}).tiling.context_px == 16  # edsr-b6c32's receptive radius
    assert load_config("live", {"scale": 4}).upscale.branches[0].model == "bicubic"


def test_at_name_refers_to_a_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED_WEIGHTS_DIR", tmp_path)
    net = build_model("fsrcnn-ps-16", 2, allow_random=True)
    save_weights(net, tmp_path / "mine.safetensors")
    loaded = build_model("fsrcnn-ps-16", 2, weights="@mine")
    assert all((a == b).all() for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ConfigError, match="no shipped weights named 'nope'; shipped: mine"):
        build_model("fsrcnn-ps-16", 2, weights="@nope")
    with pytest.raises(ConfigError, match="no shipped weights"):
        build_model("fsrcnn-ps-16", 2, weights="@../mine")
