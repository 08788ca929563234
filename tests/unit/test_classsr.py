"""ClassSR's learned tile classifier: its losses, its routing in the pipeline, its cost, and its
training (stage 2 learns which branch restores better; stage 3 moves the branches; resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vsr_stream.config import load_classifier_train_config, load_config
from vsr_stream.errors import ConfigError
from vsr_stream.media.synth import write_images
from vsr_stream.models import read_weights, save_weights, untrained_model
from vsr_stream.models.classifier import TileClassifier, classifier_from_state, classify_tiles, load_classifier
from vsr_stream.models.macs import count_macs
from vsr_stream.quality.cost import pipeline_cost
from vsr_stream.stages.classify import ClassifyStage, cut_windows, tile_classes, tile_plan
from vsr_stream.train.classsr import average_loss, class_loss, classsr_loss, train_classifier, weighted_output


def test_class_loss_is_zero_for_one_hot_and_m_minus_1_for_uniform():
    assert class_loss(torch.eye(3)).item() == pytest.approx(0.0)
    assert class_loss(torch.full((4, 3), 1 / 3)).item() == pytest.approx(2.0)
    # pairs |.5-.5| + |.5-0| + |.5-0| = 1, so (3 - 1) - 1
    assert class_loss(torch.tensor([[0.5, 0.5, 0.0]])).item() == pytest.approx(1.0)


def test_average_loss_is_zero_for_a_balanced_batch_and_grows_with_imbalance():
    assert average_loss(torch.eye(3)).item() == pytest.approx(0.0)
    everyone_first = torch.tensor([[1.0, 0.0, 0.0]] * 6)  # sums 6, 0, 0 against 2 each: (4 + 2 + 2) / 8
    assert average_loss(everyone_first).item() == pytest.approx(1.0)


def test_weighted_output_of_a_one_hot_row_is_that_branch():
    outputs = [torch.full((2, 3, 4, 4), float(k)) for k in range(3)]
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    mixed = weighted_output(probs, outputs)
    assert torch.equal(mixed[0], outputs[1][0])
    assert torch.allclose(mixed[1], torch.full((3, 4, 4), 0.3 + 2 * 0.5))


def test_the_class_loss_counts_from_its_step():
    cfg = load_classifier_train_config({"name": "c", "data": ["x"], "class_loss_from": 100,
                                        "branches": [{"model": "nearest"}, {"model": "bicubic"}]})
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    outputs = [torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)]
    hr = torch.full((2, 3, 4, 4), 0.5)
    before, parts = classsr_loss(cfg, probs, outputs, hr, 99)
    after, _ = classsr_loss(cfg, probs, outputs, hr, 100)
    assert parts == {"l1": 0.0, "class": 1.0, "average": 0.0}  # the mix is exactly HR; both classes even
    assert (before.item(), after.item()) == (0.0, pytest.approx(cfg.class_weight * 1.0))


def _brightness_classifier() -> TileClassifier:
    """Width 1, hand-set: class 1 if a tile's mean value is above 0.5, else class 0."""
    net = TileClassifier(2, width=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.features[0].weight.fill_(1 / 48)  # the mean of each 4x4x3 block
        for i in (2, 4, 6):
            net.features[i].weight.fill_(1.0)
        net.features[8].weight.fill_(1 / 32)
        net.scores.weight.copy_(torch.tensor([[-1.0] * 32, [1.0] * 32]))
        net.scores.bias.copy_(torch.tensor([0.5, -0.5]))
    return net.eval()


def _half_bright(h: int = 64, w: int = 96) -> np.ndarray:
    frame = np.full((h, w, 3), 30, np.uint8)
    frame[:, w // 2:] = 220
    return frame


@pytest.fixture
def classifier_file(tmp_path):
    path = tmp_path / "clf.safetensors"
    save_weights(_brightness_classifier(), path)
    load_classifier.cache_clear()
    yield str(path)
    load_classifier.cache_clear()


def _routed(classifier: str, n_branches: int = 2, **tiling) -> dict:
    return {"scale": 2, "tiling": {"tile_px": 16, "overlap_px": 4, "context_px": 2, **tiling},
            "classify": {"classifier": classifier},
            "upscale": {"branches": [{"model": m} for m in ("nearest", "bicubic", "bicubic")[:n_branches]]}}


def test_a_classifier_file_says_its_own_shape_and_a_foreign_one_is_refused(tmp_path, classifier_file):
    net = load_classifier(classifier_file)
    assert (net.n_classes, net.features[0].out_channels) == (2, 1)
    assert not any(p.requires_grad for p in net.parameters())
    other = tmp_path / "sr.safetensors"
    save_weights(untrained_model("fsrcnn-ps-16", 2), other)
    with pytest.raises(ConfigError, match="not a tile classifier"):
        classifier_from_state(read_weights(other))


def test_learned_classes_route_each_tile_by_its_core(classifier_file):
    frame = _half_bright()
    geom = tile_plan(64, 96, load_config(_routed(classifier_file)).tiling)
    classes = tile_classes(frame, geom, load_config(_routed(classifier_file)).classify)
    bright = geom[:, 2] >= 48  # the one core across the middle (x 36-51) is mostly dark
    assert classes.dtype == np.int8 and len(classes) == len(geom) > 4
    assert np.array_equal(classes, bright.astype(np.int8))
    direct = classify_tiles(load_classifier(classifier_file), torch.from_numpy(cut_windows(frame, geom[:, [0, 1, 2, 3, 4, 1, 2, 3, 4]])))
    assert np.array_equal(classes, direct.numpy())


@pytest.mark.parametrize("h, w", [(3, 2), (1, 1), (4, 7)])
def test_frames_smaller_than_the_classifier_kernel_are_classified(classifier_file, h, w):
    cfg = load_config(_routed(classifier_file, tile_px=4, overlap_px=1, context_px=0))
    for value, expected in ((30, 0), (220, 1)):
        frame = np.full((h, w, 3), value, np.uint8)
        geom = tile_plan(h, w, cfg.tiling)
        assert (tile_classes(frame, geom, cfg.classify) == expected).all()
        assert pipeline_cost([frame], cfg).classifier_macs > 0


def test_the_classify_stage_refuses_a_classifier_of_another_class_count(classifier_file):
    with pytest.raises(ConfigError, match="2 classes, but upscale.branches has 3"):
        ClassifyStage(load_config(_routed(classifier_file, n_branches=3)))
    with pytest.raises(ConfigError, match="does not exist"):
        ClassifyStage(load_config(_routed("/nonexistent/clf.safetensors")))
    with pytest.raises(ConfigError, match="no shipped weights named 'nope'"):
        ClassifyStage(load_config(_routed("@nope")))


def test_the_fused_loop_refuses_it_too(classifier_file):
    from vsr_stream.quality.evaluate import pipeline_upscaler

    with pytest.raises(ConfigError, match="2 classes, but upscale.branches has 3"):
        pipeline_upscaler(_routed(classifier_file, n_branches=3), 2, {"transport": {"mode": "fused"}})(_half_bright())


def test_thresholds_and_a_classifier_together_are_refused(classifier_file):
    cfg = _routed(classifier_file)
    cfg["classify"]["tvat_thresholds"] = [100.0]
    with pytest.raises(ConfigError, match="tvat_thresholds must be empty"):
        load_config(cfg)


def test_a_logit_bias_moves_tiles_between_classes(classifier_file):
    frame = _half_bright()
    cfg = _routed(classifier_file)
    geom = tile_plan(64, 96, load_config(cfg).tiling)
    plain = tile_classes(frame, geom, load_config(cfg).classify)
    assert 0 < plain.sum() < len(plain)  # both classes in use without a bias
    for bias, everyone in (([0.0, 0.0], None), ([0.0, 1e4], 1), ([1e4, 0.0], 0)):
        cfg["classify"]["classifier_bias"] = bias
        classes = tile_classes(frame, geom, load_config(cfg).classify)
        assert np.array_equal(classes, plain) if everyone is None else (classes == everyone).all()


def test_a_logit_bias_needs_a_classifier_and_one_value_per_class(classifier_file):
    with pytest.raises(ConfigError, match="classifier_bias needs classify.classifier"):
        load_config({"classify": {"classifier_bias": [0.0, 1.0]}})
    cfg = _routed(classifier_file)
    cfg["classify"]["classifier_bias"] = [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError, match="classifier_bias has 3 values; the classifier has 2 classes"):
        ClassifyStage(load_config(cfg))


def test_the_pipeline_cost_counts_the_classifier_on_every_core(classifier_file):
    frame = _half_bright()
    cfg = load_config(_routed(classifier_file))
    cost = pipeline_cost([frame], cfg)
    geom = tile_plan(64, 96, cfg.tiling)
    per_core = count_macs(load_classifier(classifier_file), torch.zeros(1, 3, int(geom[0, 3]), int(geom[0, 4])))
    assert cost.classifier_macs == pytest.approx(per_core * len(geom)) and cost.classifier_macs > 0
    assert cost.tiles_per_class[0] > 0 and cost.tiles_per_class[1] > 0
    assert cost.to_dict()["classifier_macs_per_hr_px"] == pytest.approx(cost.classifier_macs / (128 * 192))


@pytest.mark.parametrize("mode", ["inproc", "fused"])
def test_the_pipeline_routes_by_the_classifier(classifier_file, mode):
    from vsr_stream.quality.evaluate import pipeline_upscaler

    frame = _half_bright()
    frame[::2, ::2] += 5  # texture, so that nearest and bicubic differ
    out = pipeline_upscaler(_routed(classifier_file), 2, {"transport": {"mode": mode}})(frame)
    nearest = frame.repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(out[:, :64], nearest[:, :64])  # the dark half went to class 0 (nearest)
    assert not np.array_equal(out[:, 128:], nearest[:, 128:])  # the bright half to bicubic


def _train_cfg(tmp_path, **over) -> dict:
    write_images(tmp_path / "imgs", [(96, 128)] * 4)
    cfg = {"name": "c", "scale": 2, "data": [str(tmp_path / "imgs")], "out_dir": str(tmp_path / "runs"),
           "lr_patch_px": 16, "batch": 8, "width": 8, "classify_steps": 40, "joint_steps": 0, "lr": 1e-2,
           "validate_every": 20, "checkpoint_every": 10, "patch_pool": 500, "threads": 1,
           "branches": [{"model": "nearest"}, {"model": "bicubic"}]}
    return {**cfg, **over}


def _first_picture(tmp_path) -> np.ndarray:
    from vsr_stream.quality.evaluate import read_image

    return read_image(sorted((tmp_path / "imgs").iterdir())[0])


def _mean_probs(net: TileClassifier, img: np.ndarray) -> np.ndarray:
    tiles = torch.from_numpy(np.stack([img[y:y + 16, x:x + 16] for y in range(0, 80, 16) for x in range(0, 112, 16)]))
    with torch.no_grad():
        return net(tiles.permute(0, 3, 1, 2).float() / 255).softmax(1).mean(0).numpy()


def _better_branch(hr: np.ndarray, models: list[str]) -> int:
    """Which of the fixed ``models`` restores ``hr`` from its x2 LR with the smaller L1 error."""
    from vsr_stream.models import build_model
    from vsr_stream.quality.imresize import imresize

    x = torch.from_numpy(imresize(hr, 0.5)).permute(2, 0, 1)[None].float() / 255
    target = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255
    errors = [float((build_model(m, 2)(x) - target).abs().mean()) for m in models]
    assert abs(errors[0] - errors[1]) > 0.01  # the test needs a clear winner
    return int(np.argmin(errors))


def test_stage_2_learns_which_branch_restores_better(tmp_path):
    """With only the L1 loss, the classifier sends the patches to the branch with the smaller error."""
    cfg = load_classifier_train_config(_train_cfg(tmp_path, class_weight=0.0, average_weight=0.0))
    img = _first_picture(tmp_path)
    better = _better_branch(img, [b.model for b in cfg.branches])
    torch.manual_seed(cfg.seed)
    start = _mean_probs(TileClassifier(2, cfg.width), img)  # the run's own starting point
    train_classifier(cfg, show_progress=False)
    net = classifier_from_state(read_weights(tmp_path / "runs" / "c" / "classifier.safetensors"))
    end = _mean_probs(net, img)
    assert end[better] > max(start[better], 0.75)
    log = [json.loads(line) for line in (tmp_path / "runs" / "c" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40] and all(r["stage"] == 2 for r in log)


def test_a_run_is_reproducible_from_its_seed(tmp_path):
    cfg = _train_cfg(tmp_path, classify_steps=5, validate_every=5)
    made = []
    for name in ("a", "b"):
        torch.manual_seed(len(made))  # whatever the caller's random state
        train_classifier(load_classifier_train_config({**cfg, "name": name}), show_progress=False)
        made.append(read_weights(tmp_path / "runs" / name / "classifier.safetensors"))
    assert all(torch.equal(v, made[1][k]) for k, v in made[0].items())


def test_stage_3_trains_the_branches_and_resumes_from_stage_2(tmp_path):
    start = tmp_path / "sr.safetensors"
    torch.manual_seed(0)
    save_weights(untrained_model("fsrcnn-ps-16", 2), start)
    raw = _train_cfg(tmp_path, classify_steps=10, validate_every=5,
                     branches=[{"model": "bicubic"}, {"model": "fsrcnn-ps-16", "weights": str(start)}])
    train_classifier(load_classifier_train_config(raw), show_progress=False)
    run = tmp_path / "runs" / "c"
    after_2 = read_weights(run / "branch1.safetensors")
    assert all(torch.equal(v, read_weights(start)[k]) for k, v in after_2.items())  # frozen in stage 2
    summary = train_classifier(load_classifier_train_config({**raw, "joint_steps": 10}), show_progress=False)
    after_3 = read_weights(run / "branch1.safetensors")
    assert any(not torch.equal(v, after_2[k]) for k, v in after_3.items())
    assert summary["step"] == 20 and [r["stage"] for r in summary["history"]] == [2, 2, 3, 3]
    preset = load_config(str(run / "preset.toml"))
    assert preset.classify.classifier.endswith("classifier.safetensors")
    assert [b.model for b in preset.upscale.branches] == ["bicubic", "fsrcnn-ps-16"]
    kept = read_weights(run / "stage2" / "branch1.safetensors")  # stage 2's result stays for comparison
    assert all(torch.equal(v, after_2[k]) for k, v in kept.items())
    assert "stage2" in load_config(str(run / "stage2" / "preset.toml")).classify.classifier


def test_the_cli_refuses_a_bad_config_with_a_clear_message(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "c"\ndata = ["x"]\nbatch = 1\n[[branches]]\nmodel = "bicubic"\n')
    for args, message in ((["missing.toml"], "config file not found"),
                          ([str(bad)], "branches: List should have at least 2 items")):
        res = subprocess.run([sys.executable, "-m", "vsr_stream.cli", "train-classifier", *args],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode != 0 and message in res.stderr, res.stderr
    assert "batch" in res.stderr  # every wrong field is named
