"""Training on generated pictures: loss falls, TVAT classes split the patches, resume continues."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsr_stream.config import load_train_config
from vsr_stream.errors import ConfigError
from vsr_stream.media.synth import write_images
from vsr_stream.train.run import run_training


def _cfg(tmp_path, steps: int, branches: int = 1) -> dict:
    write_images(tmp_path / "imgs", [(96, 128)] * 4)
    return {"name": "t", "scale": 2, "data": [str(tmp_path / "imgs")], "out_dir": str(tmp_path / "runs"),
            "lr_patch_px": 12, "batch": 8, "validate_every": 10, "checkpoint_every": 5, "patch_pool": 1000,
            "parallel": False, "class_quantiles": [0.5] * (branches - 1) if branches == 2 else [],
            "branches": [{"model": "fsrcnn-ps-16", "steps": steps, "lr": 3e-3}] * branches}


def _log(tmp_path, k=0, name="t") -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "runs" / name / f"branch{k}" / "log.jsonl").read_text().splitlines()]


def _distilled_run(tmp_path, context_px: int = 0, **branch) -> tuple[dict, str]:
    """Train run "t" for 10 steps, then run "d" from its weights with them as the teacher."""
    cfg = _cfg(tmp_path, 10)
    run_training(load_train_config(cfg), show_progress=False)
    start = str(tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")
    cfg["name"], cfg["context_px"] = "d", context_px
    cfg["branches"] = [{"model": "fsrcnn-ps-16", "lr": 3e-3, "init": start, "teacher": start, **branch}]
    run_training(load_train_config(cfg), show_progress=False)
    return cfg, start


def test_loss_falls_and_weights_are_exported(tmp_path):
    run_training(load_train_config(_cfg(tmp_path, 60)), show_progress=False)
    log = _log(tmp_path)
    assert log[-1]["loss"] < log[0]["loss"]
    assert (tmp_path / "runs" / "t" / "branch0" / "weights.safetensors").exists()
    assert "fsrcnn-ps-16" in (tmp_path / "runs" / "t" / "preset.toml").read_text()


def test_resume_continues_from_the_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, 10)
    run_training(load_train_config(cfg), show_progress=False)
    cfg["branches"] = [{**cfg["branches"][0], "steps": 20}]
    summary = run_training(load_train_config(cfg), show_progress=False)
    assert summary["branches"][0]["step"] == 20
    assert [r["step"] for r in _log(tmp_path)] == [10, 20]


def test_two_classes_from_quantiles(tmp_path):
    summary = run_training(load_train_config(_cfg(tmp_path, 5, branches=2)), show_progress=False)
    [threshold] = summary["tvat_thresholds"]
    assert threshold > 0 and len(summary["branches"]) == 2
    assert np.isfinite([b["val_psnr_db"] for b in summary["branches"]]).all()


def test_quantiles_must_match_branches(tmp_path):
    cfg = _cfg(tmp_path, 5)
    cfg["class_quantiles"] = [0.5]
    with pytest.raises(ConfigError, match="class_quantiles"):
        load_train_config(cfg)


def test_snapshots_are_saved_at_each_validation(tmp_path):
    run_training(load_train_config(_cfg(tmp_path, 20)), show_progress=False)
    snaps = sorted(p.name for p in (tmp_path / "runs" / "t" / "branch0" / "snapshots").iterdir())
    assert snaps == ["step0000010.safetensors", "step0000020.safetensors"]


def test_ship_copies_the_weights_and_writes_a_card(tmp_path):
    import hashlib

    from vsr_stream.train.card import LICENCE, ship

    cfg = load_train_config(_cfg(tmp_path, 10))
    run_training(cfg, show_progress=False)
    card = ship(cfg, "my.toml", 0, "tiny_x2", dest=tmp_path / "ship")
    shipped = tmp_path / "ship" / "tiny_x2.safetensors"
    trained = tmp_path / "runs" / "t" / "branch0" / "weights.safetensors"
    assert shipped.read_bytes() == trained.read_bytes()
    text = card.read_text()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() in text
    assert "10 steps" in text and "vsr-stream train my.toml" in text and LICENCE in text
    assert "Not scored" in text  # no sr-val folder here
    assert "; RGB network." in text


def test_ship_refuses_an_unfinished_branch(tmp_path):
    from vsr_stream.train.card import ship

    cfg = load_train_config(_cfg(tmp_path, 10))
    run_training(cfg, show_progress=False)
    longer = cfg.model_copy(update={"branches": [cfg.branches[0].model_copy(update={"steps": 50})]})
    with pytest.raises(ConfigError, match="has not finished"):
        ship(longer, "my.toml", 0, "tiny_x2", dest=tmp_path / "ship")
    with pytest.raises(ConfigError, match="--branch 3"):
        ship(cfg, "my.toml", 3, "tiny_x2", dest=tmp_path / "ship")


def test_init_from_another_scale_takes_the_fitting_tensors(tmp_path):
    import torch

    from vsr_stream.models import build_model, load_matching_weights, save_weights

    x4 = build_model("fsrcnn-ps-16", 4, allow_random=True)
    for p in x4.parameters():
        p.add_(0.5)
    save_weights(x4, tmp_path / "x4.safetensors")
    cfg = _cfg(tmp_path, 1)
    cfg["branches"] = [{**cfg["branches"][0], "init": str(tmp_path / "x4.safetensors"), "init_layers": "matching"}]
    with pytest.raises(ConfigError, match="does not fit"):
        run_training(load_train_config({**cfg, "branches": [{**cfg["branches"][0], "init_layers": "all"}]}),
                     show_progress=False)
    x2 = build_model("fsrcnn-ps-16", 2, allow_random=True)
    kept = load_matching_weights(x2, tmp_path / "x4.safetensors")
    assert kept == ["tail.bias", "tail.weight"]
    body = {k: v for k, v in x4.state_dict().items() if not k.startswith("tail")}
    assert all(torch.equal(x2.state_dict()[k], v) for k, v in body.items())
    assert run_training(load_train_config(cfg), show_progress=False)["branches"][0]["step"] == 1
    with pytest.raises(ConfigError, match="no tensor fits"):
        load_matching_weights(build_model("edsr-b6c32", 2, allow_random=True), tmp_path / "x4.safetensors")


def test_a_fresh_run_does_not_start_from_the_shipped_weights():
    import torch

    from vsr_stream.config import TrainBranchConfig
    from vsr_stream.models import build_model, registry, save_weights
    from vsr_stream.train.trainer import _initial_model

    registry.SHIPPED_WEIGHTS_DIR.mkdir(parents=True)  # this test's own "shipped" x4 weights
    net = build_model("fsrcnn-ps-16", 4, allow_random=True)
    for p in net.parameters():
        p.add_(0.5)
    save_weights(net, registry.shipped_weights_path("fsrcnn-ps-16", 4))
    shipped = build_model("fsrcnn-ps-16", 4).state_dict()
    fresh = _initial_model(TrainBranchConfig(model="fsrcnn-ps-16"), 4).state_dict()
    assert not any(torch.equal(fresh[k], v) for k, v in shipped.items())
    named = _initial_model(TrainBranchConfig(model="fsrcnn-ps-16", init="@fsrcnn-ps-16_x4"), 4).state_dict()
    assert all(torch.equal(named[k], v) for k, v in shipped.items())
    with pytest.raises(ConfigError, match="no weights to start from"):
        _initial_model(TrainBranchConfig(model="bicubic", init="x.safetensors"), 4)


def test_l2_loss_trains_and_the_card_says_so(tmp_path):
    from vsr_stream.train.card import ship

    cfg = _cfg(tmp_path, 60)
    l1 = run_training(load_train_config({**cfg, "name": "l1"}), show_progress=False)
    l1_weights = tmp_path / "runs" / "l1" / "branch0" / "weights.safetensors"
    cfg["branches"] = [{**cfg["branches"][0], "loss": "l2", "init": str(l1_weights)}]
    run_training(load_train_config(cfg), show_progress=False)
    log, l1_log = _log(tmp_path), [json.loads(s) for s in (tmp_path / "runs" / "l1" / "branch0" / "log.jsonl").open()]
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[0]["loss"] < 0.5 * l1_log[0]["loss"]  # squared errors of [0, 1] pixels are far below their L1
    assert l1["branches"][0]["step"] == 60
    card = ship(load_train_config(cfg), "my.toml", 0, "tiny_x2", dest=tmp_path / "ship").read_text()
    assert "Adam on L2 loss" in card
    assert f"Before this stage, `{l1_weights}` was trained for 60 steps" in card  # the L1 stage it started from
    with pytest.raises(ConfigError, match="loss"):
        load_train_config({**cfg, "branches": [{**cfg["branches"][0], "loss": "huber"}]})


def test_a_zero_step_branch_keeps_its_init(tmp_path):
    """steps = 0 keeps a trained branch while the others retrain; it needs init and is not shipped."""
    from safetensors.torch import load_file

    from vsr_stream.train.card import ship

    cfg = _cfg(tmp_path, 10, branches=2)
    run_training(load_train_config(cfg), show_progress=False)
    first = tmp_path / "runs" / "t" / "branch1" / "weights.safetensors"
    kept_branch = {**cfg["branches"][1], "steps": 0, "init": str(first)}
    again = {**cfg, "name": "t2", "branches": [cfg["branches"][0], kept_branch]}
    summary = run_training(load_train_config(again), show_progress=False)
    assert [b["step"] for b in summary["branches"]] == [10, 0]
    kept = load_file(tmp_path / "runs" / "t2" / "branch1" / "weights.safetensors")
    assert all((kept[k] == v).all() for k, v in load_file(first).items())
    with pytest.raises(ConfigError, match="steps = 0"):
        ship(load_train_config(again), "my.toml", 1, "x", dest=tmp_path / "ship")
    with pytest.raises(ConfigError, match="no init"):
        load_train_config({**cfg, "branches": [{**cfg["branches"][0], "steps": 0}]})



def test_a_soup_is_the_mean_of_its_runs_and_ships_with_a_card_that_says_so(tmp_path):
    """init = [a, b] with steps = 0: the branch is the element-wise mean of two fine-tunes (a model
    soup), and unlike a kept init it ships, its card naming both runs."""
    from safetensors.torch import load_file

    from vsr_stream.train.card import ship

    cfg = _cfg(tmp_path, 10)
    run_training(load_train_config(cfg), show_progress=False)
    start = str(tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")
    ends = []
    for name, seed in (("a", 1), ("b", 2)):
        run = {**cfg, "name": name, "seed": seed, "branches": [{**cfg["branches"][0], "init": start}]}
        run_training(load_train_config(run), show_progress=False)
        ends.append(str(tmp_path / "runs" / name / "branch0" / "weights.safetensors"))
    soup_cfg = load_train_config({**cfg, "name": "s", "branches": [{"model": "fsrcnn-ps-16", "steps": 0, "init": ends}]})
    summary = run_training(soup_cfg, show_progress=False)
    assert summary["branches"][0]["step"] == 0
    a, b, soup = (load_file(p) for p in (*ends, tmp_path / "runs" / "s" / "branch0" / "weights.safetensors"))
    assert any(not (a[k] == b[k]).all() for k in a)  # two different runs, so the mean is neither
    for key in a:
        assert (soup[key] - (a[key] + b[key]) / 2).abs().max() < 1e-6, key
    text = ship(soup_cfg, "soup.toml", 0, "soup_x2", dest=tmp_path / "ship").read_text()
    assert f"the uniform average of the tensors of `{ends[0]}`, `{ends[1]}`" in text
    assert "no further training" in text and "steps of Adam" not in text
    assert f"Before this stage, `{ends[1]}` was trained for 10 steps" in text
    assert f"The run starts from `{ends[0]}`, `{ends[1]}`: make those first" in text


def test_a_soup_trains_on_from_the_mean(tmp_path):
    import torch

    from vsr_stream.models import build_model
    from vsr_stream.train.card import ship

    cfg = _cfg(tmp_path, 10)
    run_training(load_train_config(cfg), show_progress=False)
    start = str(tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")
    run = load_train_config({**cfg, "name": "f", "branches": [{**cfg["branches"][0], "init": [start, start]}]})
    run_training(run, show_progress=False)
    assert [r["step"] for r in _log(tmp_path, name="f")] == [10]
    trained = build_model("fsrcnn-ps-16", 2, weights=tmp_path / "runs" / "f" / "branch0" / "weights.safetensors")
    first = build_model("fsrcnn-ps-16", 2, weights=start)
    assert any(not torch.equal(p, q) for p, q in zip(trained.parameters(), first.parameters()))
    text = ship(run, "f.toml", 0, "f_x2", dest=tmp_path / "ship").read_text()
    assert f"10 steps of Adam" in text and f"started from the uniform average of `{start}`, `{start}`" in text


def test_a_soup_refuses_files_of_another_network_and_a_single_file(tmp_path):
    from vsr_stream.models import save_weights, untrained_model

    cfg = _cfg(tmp_path, 10)
    run_training(load_train_config(cfg), show_progress=False)
    start = str(tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")
    other = tmp_path / "other.safetensors"
    save_weights(untrained_model("fsrcnn-ps-36", 2), other)
    soup = {**cfg, "name": "s", "branches": [{"model": "fsrcnn-ps-16", "steps": 0, "init": [start, str(other)]}]}
    with pytest.raises(ConfigError, match=f"soup: {other}"):
        run_training(load_train_config(soup), show_progress=False)
    assert not (tmp_path / "runs" / "s" / "branch0" / "weights.safetensors").exists()
    for bad in ({"init": [start]}, {"init": [start, start], "init_layers": "matching"}):
        with pytest.raises(ConfigError, match="soup of two or more"):
            load_train_config({**cfg, "branches": [{**cfg["branches"][0], **bad}]})

def test_deepen_starts_a_deeper_mapping_from_the_shallower_function(tmp_path):
    """init_layers = 'deepen': the extra mapping layers start as identities, so step 0 computes the
    shallower network's output exactly, and training goes on from there."""
    import torch

    from vsr_stream.models import build_model, read_weights
    from vsr_stream.models.fsrcnn import deepened_state
    from vsr_stream.train.card import ship

    cfg = {**_cfg(tmp_path, 4), "name": "m4"}
    cfg["branches"] = [{**cfg["branches"][0], "model": "fsrcnn-ps-56-y"}]
    run_training(load_train_config(cfg), show_progress=False)
    m4_weights = tmp_path / "runs" / "m4" / "branch0" / "weights.safetensors"
    shallow = build_model("fsrcnn-ps-56-y", 2, weights=m4_weights)
    deep = build_model("fsrcnn-ps-56-m6-y", 2, allow_random=True)
    deep.load_state_dict(deepened_state(read_weights(m4_weights), deep.state_dict()))
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(shallow(x), deep(x))

    cfg = {**cfg, "name": "t", "branches": [{**cfg["branches"][0], "model": "fsrcnn-ps-56-m6-y", "steps": 6,
                                             "init": str(m4_weights), "init_layers": "deepen"}]}
    assert run_training(load_train_config(cfg), show_progress=False)["branches"][0]["step"] == 6
    assert "mapping deepened by identity layers" in ship(load_train_config(cfg), "my.toml", 0, "x", dest=tmp_path / "s").read_text()
    with pytest.raises(ConfigError, match="needs a shallower FSRCNN"):  # not deeper than the weights
        deepened_state(read_weights(m4_weights), build_model("fsrcnn-ps-56-y", 2, allow_random=True).state_dict())
    with pytest.raises(ConfigError, match="do not fit"):  # deeper, but another scale's tail
        deepened_state(read_weights(m4_weights), build_model("fsrcnn-ps-56-m6-y", 3, allow_random=True).state_dict())


def test_deepen_adds_pointwise_mapping_layers_as_identities():
    """The pointwise variants (m 3x3 + p 1x1 mapping layers) deepen from the m-layer net exactly,
    cost p x 144 more MACs per LR pixel and see no further."""
    import torch

    from vsr_stream.models import build_model, get
    from vsr_stream.models.fsrcnn import deepened_state, mapping_layers
    from vsr_stream.models.macs import macs_per_output_pixel

    torch.manual_seed(3)
    m9 = build_model("fsrcnn-ps-56-m9-y", 4, allow_random=True)
    for p in m9.parameters():  # trained-like PReLU slopes, so an identity layer must really be one
        p.data += 0.05 * torch.randn_like(p)
    pointwise = build_model("fsrcnn-ps-56-m9p4-y", 4, allow_random=True)
    state = deepened_state(m9.state_dict(), pointwise.state_dict())
    assert len(mapping_layers(state)) == 9 and len(mapping_layers(state, kernels=((3, 3), (1, 1)))) == 13
    pointwise.load_state_dict(state)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(m9(x), pointwise(x))
    extra = macs_per_output_pixel(pointwise, 4) - macs_per_output_pixel(m9, 4)
    assert extra == pytest.approx(4 * 12 * 12 / 16, abs=1e-9)
    assert get("fsrcnn-ps-56-m9p4-y").receptive_radius_px == get("fsrcnn-ps-56-m9-y").receptive_radius_px


def test_prune_starts_a_narrower_net_from_a_wider_ones_strongest_channels(tmp_path):
    """init_layers = 'prune': a trained d = 56 net cut to d = 36 on the run's patches is closer to
    the wide net than the cut by weight magnitude alone; it trains, and its card says how it began."""
    import torch
    import torch.nn.functional as F

    from vsr_stream.models import build_model, read_weights
    from vsr_stream.models.fsrcnn import pruned_state
    from vsr_stream.train.card import ship

    cfg = {**_cfg(tmp_path, 30), "name": "wide"}
    cfg["branches"] = [{**cfg["branches"][0], "model": "fsrcnn-ps-56-y"}]
    run_training(load_train_config(cfg), show_progress=False)
    wide_weights = tmp_path / "runs" / "wide" / "branch0" / "weights.safetensors"
    cfg = {**cfg, "name": "t", "branches": [{**cfg["branches"][0], "model": "fsrcnn-ps-36-y", "steps": 0,
                                             "init": str(wide_weights), "init_layers": "prune"}]}
    run_training(load_train_config(cfg), show_progress=False)
    calibrated = build_model("fsrcnn-ps-36-y", 2, weights=tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")
    by_magnitude = build_model("fsrcnn-ps-36-y", 2, allow_random=True)
    by_magnitude.load_state_dict(pruned_state(read_weights(wide_weights), by_magnitude.state_dict()))
    wide = build_model("fsrcnn-ps-56-y", 2, weights=wide_weights)
    x = torch.rand(2, 3, 30, 34, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = wide(x)
        assert F.mse_loss(calibrated(x), target) < 0.5 * F.mse_loss(by_magnitude(x), target)

    cfg = {**cfg, "name": "t2", "branches": [{**cfg["branches"][0], "steps": 2}]}
    assert run_training(load_train_config(cfg), show_progress=False)["branches"][0]["step"] == 2
    assert "feature channels pruned to this width" in ship(load_train_config(cfg), "my.toml", 0, "x",
                                                           dest=tmp_path / "s").read_text()
    cfg["name"] = "widen"  # a model wider than its init: refused before training
    cfg["branches"] = [{**cfg["branches"][0], "model": "fsrcnn-ps-56-y",
                        "init": str(tmp_path / "runs" / "t" / "branch0" / "weights.safetensors")}]
    with pytest.raises(ConfigError, match="cannot prune"):
        run_training(load_train_config(cfg), show_progress=False)


def test_context_patches_see_picture_around_the_scored_core(tmp_path):
    from vsr_stream.train.data import patch_bank, sample_batch, scored

    cfg = load_train_config({**_cfg(tmp_path, 12), "context_px": 5})
    bank = patch_bank(cfg, np.random.default_rng(0))
    n, c, s = cfg.lr_patch_px, cfg.context_px, cfg.scale
    for i, y, x in zip(bank.pic, bank.y, bank.x):  # every window, context included, lies inside its picture
        h, w = bank.pictures[i].lr.shape[:2]
        assert c <= y <= h - n - c and c <= x <= w - n - c
    lr, hr = sample_batch(bank, np.arange(len(bank.tvat)), 6, s, np.random.default_rng(1))
    assert lr.shape == (6, 3, n + 2 * c, n + 2 * c) and hr.shape == (6, 3, n * s, n * s)
    import torch
    up = torch.nn.functional.interpolate(torch.from_numpy(lr), scale_factor=s, mode="nearest")
    core = scored(up, c, s).numpy()
    # the scored output region lies over the HR core: nearest-upsampled LR core tracks it closely
    assert core.shape == hr.shape and np.abs(core - hr).mean() < np.abs(up[..., :n * s, :n * s].numpy() - hr).mean()


def test_training_with_context_scores_the_core_and_the_loss_falls(tmp_path):
    run_training(load_train_config({**_cfg(tmp_path, 40), "context_px": 4}), show_progress=False)
    log = _log(tmp_path)
    assert log[-1]["loss"] < log[0]["loss"]


def test_learning_rate_warms_up_then_decays_to_the_final_ratio():
    from vsr_stream.train.trainer import lr_at

    assert lr_at(0, 1e-3, 0.02, 1000) == pytest.approx(1e-3)  # no warmup: cosine from the first step
    assert lr_at(1000, 1e-3, 0.02, 1000) == pytest.approx(2e-5)
    warm = [lr_at(s, 1e-3, 0.02, 1000, warmup=100) for s in range(1001)]
    assert warm[0] == pytest.approx(1e-5) and warm[99] == pytest.approx(1e-3) and warm[100] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(warm[:100], warm[1:101])) and all(a >= b for a, b in zip(warm[100:], warm[101:]))
    assert warm[-1] == pytest.approx(2e-5)


def test_a_warmup_as_long_as_the_run_is_refused(tmp_path):
    cfg = _cfg(tmp_path, 10)
    cfg["branches"] = [{**cfg["branches"][0], "warmup_steps": 10}]
    with pytest.raises(ConfigError, match="warmup_steps"):
        load_train_config(cfg)


def test_a_teacher_equal_to_the_student_leaves_nothing_to_learn(tmp_path):
    """Distilling (weight 1) from the weights the student starts from: the loss is exactly 0 from the
    first step, so the teacher sees the same patches, scored the same way (context 3), as the student."""
    _distilled_run(tmp_path, context_px=3, steps=10, teacher_self_ensemble=False, distill_weight=1.0)
    assert [r["loss"] for r in _log(tmp_path, name="d")] == [0.0]


def test_a_self_ensembled_teacher_trains_and_the_card_says_so(tmp_path):
    from vsr_stream.train.card import ship

    cfg, start = _distilled_run(tmp_path, steps=40, distill_weight=0.5)
    log = _log(tmp_path, name="d")
    assert 0 < log[-1]["loss"] < log[0]["loss"]
    text = ship(load_train_config(cfg), "d.toml", 0, "tiny_x2", dest=tmp_path / "ship").read_text()
    assert f"distilled from `{start}`" in text and "8 flips/rotations" in text


def test_the_distillation_loss_blends_the_two_targets():
    import torch

    from vsr_stream.config import TrainBranchConfig
    from vsr_stream.train.trainer import branch_loss

    sr, hr, taught = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)
    branch = TrainBranchConfig(model="fsrcnn-ps-16", teacher="w.safetensors", distill_weight=0.25, loss="l2")
    assert branch_loss(branch, sr, hr, taught).item() == pytest.approx(0.75 * 1 + 0.25 * 9)
    assert branch_loss(branch, sr, hr, None).item() == pytest.approx(1.0)


def test_a_teacher_model_without_teacher_weights_is_refused(tmp_path):
    cfg = _cfg(tmp_path, 5)
    cfg["branches"] = [{"model": "fsrcnn-ps-16", "steps": 5, "teacher_model": "fsrcnn-ps-56"}]
    with pytest.raises(ConfigError, match="teacher_model"):
        load_train_config(cfg)


def test_a_missing_teacher_file_is_a_config_error(tmp_path):
    cfg = _cfg(tmp_path, 5)
    cfg["branches"] = [{"model": "fsrcnn-ps-16", "steps": 5, "teacher": str(tmp_path / "none.safetensors")}]
    with pytest.raises(ConfigError, match="does not exist"):
        run_training(load_train_config(cfg), show_progress=False)
    assert not (tmp_path / "runs" / "t" / "branch0" / "weights.safetensors").exists()


def test_a_luma_loss_scores_y_only_as_eval_does():
    import torch

    from vsr_stream.config import TrainBranchConfig
    from vsr_stream.quality.metrics import rgb_to_y
    from vsr_stream.train.trainer import branch_loss

    gen = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(2, 3, 5, 4, generator=gen), torch.rand(2, 3, 5, 4, generator=gen)
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)
    v = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    chroma_only = (v - (v @ w) / (w @ w) * w).float().view(1, 3, 1, 1) * 0.2  # moves no Y
    y_branch = TrainBranchConfig(model="fsrcnn-ps-16-y", loss="l2", loss_on="y")
    rgb_branch = TrainBranchConfig(model="fsrcnn-ps-16-y", loss="l2")
    y_of = [np.stack([rgb_to_y(im) for im in t.permute(0, 2, 3, 1).double().numpy() * 255]) for t in (sr, hr)]
    expected = np.mean((y_of[0] - y_of[1]) ** 2) / 255**2
    assert branch_loss(y_branch, sr, hr, None).item() == pytest.approx(expected, rel=1e-5)
    assert branch_loss(y_branch, sr, hr + chroma_only, None).item() == pytest.approx(expected, rel=1e-5)
    assert branch_loss(rgb_branch, sr, hr + chroma_only, None).item() != pytest.approx(
        branch_loss(rgb_branch, sr, hr, None).item(), rel=1e-3)
    taught = hr + chroma_only  # the teacher's target is scored on Y as well
    assert branch_loss(y_branch.model_copy(update={"teacher": "w", "distill_weight": 0.5}), sr, hr, taught).item() \
        == pytest.approx(expected, rel=1e-5)


def test_a_luma_network_trains_on_a_luma_loss_and_the_card_says_so(tmp_path):
    from vsr_stream.train.card import ship

    cfg = _cfg(tmp_path, 40)
    cfg["branches"] = [{"model": "fsrcnn-ps-16-y", "steps": 40, "lr": 3e-3, "loss": "l2", "loss_on": "y"}]
    run_training(load_train_config(cfg), show_progress=False)
    log = _log(tmp_path)
    assert log[-1]["loss"] < log[0]["loss"]
    card = ship(load_train_config(cfg), "my.toml", 0, "tiny_x2", dest=tmp_path / "ship").read_text()
    assert "Adam on L2 loss on luma (Y)" in card
    assert "luma (BT.601 Y) network; chroma is upscaled bicubically" in card


def test_a_luma_loss_on_an_rgb_network_is_refused_before_training(tmp_path):
    cfg = _cfg(tmp_path, 5)
    cfg["branches"] = [{"model": "fsrcnn-ps-16", "steps": 5, "loss_on": "y"}]
    with pytest.raises(ConfigError, match="luma network"):
        run_training(load_train_config(cfg), show_progress=False)
    assert not (tmp_path / "runs" / "t" / "branch0" / "ckpt.pt").exists()


def test_scale_augmentation_adds_smaller_copies_of_every_picture(tmp_path):
    from vsr_stream.quality.imresize import imresize
    from vsr_stream.train.data import downscaled_copies, patch_bank

    hr = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    copies = downscaled_copies(hr, [0.75, 0.5])
    assert [c.shape for c in copies] == [(96, 128, 3), (72, 96, 3), (48, 64, 3)]
    assert copies[0] is hr and np.array_equal(copies[2], imresize(hr, 0.5))
    plain = patch_bank(load_train_config(_cfg(tmp_path, 5)), np.random.default_rng(0))
    aug = patch_bank(load_train_config({**_cfg(tmp_path, 5), "hr_downscales": [0.75, 0.5]}), np.random.default_rng(0))
    assert [p.hr.shape for p in aug.pictures[:3]] == [(96, 128, 3), (72, 96, 3), (48, 64, 3)]
    assert len(aug.pictures) == 3 * len(plain.pictures)
    for p in aug.pictures:  # each copy's LR is made from that copy, not from the original
        assert np.array_equal(p.lr, imresize(p.hr, 1 / 2))
    # patches are drawn in proportion to area: the copies get their share, the originals the rest
    counts = np.bincount(aug.pic % 3, minlength=3) / len(aug.pic)
    areas = np.array([37 * 53, 25 * 37, 13 * 21], float)  # positions of a 12-px patch in 48x64, 36x48, 24x32 LR
    assert np.allclose(counts, areas / areas.sum(), atol=0.03)


def test_scale_augmentation_trains_and_the_card_says_so(tmp_path):
    from vsr_stream.train.card import ship

    cfg = load_train_config({**_cfg(tmp_path, 30), "hr_downscales": [0.8]})
    run_training(cfg, show_progress=False)
    log = _log(tmp_path)
    assert log[-1]["loss"] < log[0]["loss"]
    card = ship(cfg, "my.toml", 0, "tiny_x2", dest=tmp_path / "ship").read_text()
    assert "each picture also made smaller by 0.8 (scale augmentation)" in card


@pytest.mark.parametrize("factors", [[1.0], [0.0], [1.5], [-0.5]])
def test_scale_augmentation_only_makes_smaller_copies(tmp_path, factors):
    with pytest.raises(ConfigError, match="hr_downscales"):
        load_train_config({**_cfg(tmp_path, 5), "hr_downscales": factors})


def test_average_states_keeps_equal_counters_and_refuses_different_ones():
    import torch

    from vsr_stream.train.soup import average_states

    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([2.0, 4.0], dtype=torch.bfloat16), "n": torch.tensor(3)}
    out = average_states([a, b], ["a", "b"])
    assert out["w"].dtype == torch.bfloat16 and out["w"].tolist() == [1.5, 3.0] and out["n"].item() == 3
    with pytest.raises(ConfigError, match="b's n"):
        average_states([a, {**b, "n": torch.tensor(4)}], ["a", "b"])
    with pytest.raises(ConfigError, match="b's w is torch.float32"):
        average_states([a, {**b, "w": b["w"].float()}], ["a", "b"])
    with pytest.raises(ConfigError, match="two or more"):
        average_states([a], ["a"])
