"""Training one branch: Adam + L1 (or L2) on its class's patches, cosine learning-rate decay,
validation Y-PSNR as it goes, and checkpoints that a later sitting resumes from (model, optimiser,
step, random states, wall time, history)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vsr_stream.config import TrainConfig
from vsr_stream.errors import ConfigError
from vsr_stream.models import build_model, load_matching_weights, load_weights, read_weights, save_weights, untrained_model
from vsr_stream.models.ensemble import with_self_ensemble
from vsr_stream.models.fsrcnn import deepened_state, pruned_state
from vsr_stream.models.quantize import calibrate_fake_quant, fake_quantized
from vsr_stream.models.registry import check_state_fits, weights_file
from vsr_stream.models.ychannel import YChannel, luma
from vsr_stream.quality.evaluate import network_upscaler
from vsr_stream.quality.metrics import psnr_y
from vsr_stream.train.data import load_pictures, patch_bank, sample_batch, scored
from vsr_stream.train.prune import prune_into, twin_of
from vsr_stream.train.soup import average_states

log = logging.getLogger(__name__)

_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}
CALIBRATION_PATCHES = 128  # LR patches that init_layers = 'prune' measures channels and refits layers on


@dataclass(frozen=True)
class BranchJob:
    """What one (possibly separate) process trains: branch ``cls`` of ``cfg``."""

    cfg: dict[str, Any]
    cls: int
    thresholds: list[float]
    threads: int
    show_progress: bool = True


def branch_dir(cfg: TrainConfig, cls: int) -> Path:
    return Path(cfg.out_dir) / cfg.name / f"branch{cls}"


def train_branch(job: BranchJob) -> dict[str, Any]:
    """Train (or resume) one branch to its configured steps; returns its final record."""
    cfg = TrainConfig.model_validate(job.cfg)
    branch = cfg.branches[job.cls]
    if job.threads:
        torch.set_num_threads(job.threads)
    out = branch_dir(cfg, job.cls)
    out.mkdir(parents=True, exist_ok=True)
    if branch.steps == 0:  # kept as its init: no pictures, no patches, no validation needed (but to prune)
        net = _initial_model(branch, cfg.scale)
        if branch.init_layers == "prune":
            bank = patch_bank(cfg, np.random.default_rng(cfg.seed))
            _calibrated_prune(branch, cfg, net, bank, bank.members(job.cls, job.thresholds))
        save_weights(net, out / "weights.safetensors")
        return {"cls": job.cls, "model": branch.model, "step": 0, "elapsed_s": 0.0, "val_psnr_db": None}
    teacher = _teacher(branch, cfg.scale)  # before the patches: a bad teacher or init fails at once
    net = trainable(_initial_model(branch, cfg.scale))
    if branch.loss_on == "y" and not isinstance(net, YChannel):
        raise ConfigError(f"branch {branch.model!r}: loss_on = 'y' needs a luma network (an RGB network's "
                          "chroma would go untrained); use loss_on = 'rgb'")
    rng = np.random.default_rng(cfg.seed)
    bank = patch_bank(cfg, rng)
    members = bank.members(job.cls, job.thresholds)
    if branch.init_layers == "prune":  # on a resume the checkpoint's weights replace these
        _calibrated_prune(branch, cfg, net, bank, members)
    val = validation_pairs(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=branch.lr)
    state = resume(out / "ckpt.pt", net, opt, rng)
    log.info("branch %d (%s): %d of %d candidate patches, from step %d", job.cls, branch.model,
             len(members), len(bank.tvat), state["step"])
    # quantization-aware: the steps run a twin with int8 rounding simulated, sharing net's parameters
    runner = fake_quantized(net) if branch.quantize_aware else net
    _loop(cfg, job, net, runner, teacher, opt, state, bank, members, val, rng, out)
    save_weights(net, out / "weights.safetensors")
    return {"cls": job.cls, "model": branch.model, **{k: state[k] for k in ("step", "elapsed_s")},
            "val_psnr_db": state["history"][-1]["val_psnr_db"] if state["history"] else None}


def _initial_model(branch, scale: int) -> torch.nn.Module:
    """The network a branch starts from: freshly initialised, then its ``init`` weights (all of
    them, or only the tensors that fit). Never the shipped weights unless ``init`` names them."""
    net = untrained_model(branch.model, scale)
    if branch.init is None:
        return net
    if isinstance(branch.init, list):  # a soup: every file must fit the model (init_layers = "all")
        paths = [_init_file(branch, scale, init) for init in branch.init]
        soup = average_states([read_weights(p) for p in paths], [str(p) for p in paths])
        check_state_fits(net, soup, paths[0])
        net.load_state_dict(soup)
        return net
    path = _init_file(branch, scale, branch.init)
    if branch.init_layers == "all":
        load_weights(net, path)
        return net
    if branch.init_layers == "deepen":
        net.load_state_dict(deepened_state(read_weights(path), net.state_dict()))
        return net
    if branch.init_layers == "prune":  # by weight magnitude; _calibrated_prune redoes it on the run's patches
        net.load_state_dict(pruned_state(read_weights(path), net.state_dict()))
        return net
    kept = load_matching_weights(net, path)
    log.info("%s x%d: started from the fitting tensors of %s; initialised as usual: %s",
             branch.model, scale, branch.init, ", ".join(kept) or "none")
    return net


def _init_file(branch, scale: int, init: str) -> Path:
    path = weights_file(branch.model, scale, init)
    if path is None:
        raise ConfigError(f"model {branch.model!r} has no weights to start from (init = {init!r})")
    return path


def _calibrated_prune(branch, cfg: TrainConfig, net: torch.nn.Module, bank, members: np.ndarray) -> None:
    """init_layers = 'prune': ``net`` pruned from its ``init`` by the channels' size on
    :data:`CALIBRATION_PATCHES` of the branch's own patches, the layers reading them refit there."""
    wide = twin_of(net, read_weights(weights_file(branch.model, cfg.scale, branch.init)), cfg.scale)
    lr, _ = sample_batch(bank, members, CALIBRATION_PATCHES, cfg.scale, np.random.default_rng(cfg.seed))
    prune_into(wide, net, torch.from_numpy(lr), seed=cfg.seed)


def _teacher(branch, scale: int) -> torch.nn.Module | None:
    """The frozen network whose output is the distillation target, or None (no ``teacher``)."""
    if branch.teacher is None:
        return None
    net = build_model(branch.teacher_model or branch.model, scale, weights=branch.teacher)  # eval, frozen
    return with_self_ensemble(net) if branch.teacher_self_ensemble else net


def branch_loss(branch, sr: torch.Tensor, hr: torch.Tensor, taught: torch.Tensor | None) -> torch.Tensor:
    """The branch's pixel loss against HR, blended with the loss against the teacher's output, both
    scored in the branch's ``loss_on`` colour space."""
    sr, hr = _loss_space(branch, sr), _loss_space(branch, hr)
    loss = _LOSSES[branch.loss](sr, hr)
    if taught is None:
        return loss
    return (1 - branch.distill_weight) * loss + branch.distill_weight * _LOSSES[branch.loss](sr, _loss_space(branch, taught))


def _loss_space(branch, rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB on [0, 1] as the loss sees it: unchanged, or its BT.601 Y (the loss compares
    differences, so Y's constant offset does not matter)."""
    return rgb if branch.loss_on == "rgb" else luma(rgb)


def trainable(net: torch.nn.Module) -> torch.nn.Module:
    for p in net.parameters():
        p.requires_grad_(True)
    return net.train()


def _loop(cfg, job, net, runner, teacher, opt, state, bank, members, val, rng, out) -> None:
    """Train ``net`` to its steps: forward passes through ``runner`` (``net`` itself, or its
    fake-quantized twin, whose activation ranges are recalibrated before each validation)."""
    branch = cfg.branches[job.cls]
    bar = _bar(job, branch.steps, state["step"])
    t_resume, elapsed0 = time.monotonic(), state["elapsed_s"]
    losses: list[float] = []
    while state["step"] < branch.steps:
        set_lr(opt, lr_at(state["step"], branch.lr, cfg.lr_final_ratio, branch.steps, branch.warmup_steps))
        lr_b, hr_b = sample_batch(bank, members, cfg.batch, cfg.scale, rng)
        x = torch.from_numpy(lr_b)
        sr = scored(runner(x), cfg.context_px, cfg.scale)
        taught = None
        if teacher is not None:
            with torch.no_grad():
                taught = scored(teacher(x), cfg.context_px, cfg.scale)
        loss = branch_loss(branch, sr, torch.from_numpy(hr_b), taught)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        state["step"] += 1
        state["elapsed_s"] = elapsed0 + time.monotonic() - t_resume
        if bar is not None:
            bar.update(1)
        done = state["step"] == branch.steps
        if state["step"] % cfg.validate_every == 0 or done:
            if runner is not net:
                calibrate_fake_quant(runner)
            record = {"step": state["step"], "elapsed_s": round(state["elapsed_s"], 1),
                      "loss": float(np.mean(losses)), "val_psnr_db": validate(runner, val, cfg.scale)}
            losses = []
            state["history"].append(record)
            _log_line(out, record)
            snapshot = snapshot_path(out, state["step"])
            snapshot.parent.mkdir(exist_ok=True)
            save_weights(net, snapshot)
            if bar is not None:
                bar.set_postfix(val=f"{record['val_psnr_db']:.2f}dB")
        if state["step"] % cfg.checkpoint_every == 0 or done:
            checkpoint(out / "ckpt.pt", net, opt, state, rng)
    if bar is not None:
        bar.close()


def snapshot_path(out: Path, step: int) -> Path:
    """Weights saved at each validation, to score the classes together as training went."""
    return out / "snapshots" / f"step{step:07d}.safetensors"


def lr_at(step: int, lr0: float, final_ratio: float, steps: int, warmup: int = 0) -> float:
    """Learning rate at ``step``: a linear warmup from lr0 / warmup to lr0 over the first ``warmup``
    steps (a fresh Adam's first updates are full-size whatever the gradient: a fine-tune from a
    trained network loses ground to them), then cosine decay to final_ratio × lr0 at ``steps``."""
    if step < warmup:
        return lr0 * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr0 * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _bar(job: BranchJob, total: int, start: int):
    if not job.show_progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=f"branch {job.cls}", position=job.cls, unit="step", leave=True)


def _log_line(out: Path, record: dict[str, Any]) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def validation_pairs(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 RGB pairs of the validation set; a few training pictures if there is none."""
    from vsr_stream.quality.evaluate import load_sr_val
    from vsr_stream.train.data import as_rgb

    if cfg.val_root:
        return [(as_rgb(lr), as_rgb(hr)) for _, lr, hr in load_sr_val(cfg.val_root, cfg.val_set, cfg.scale)]
    pictures = load_pictures(cfg.data[:1], cfg.scale, 0, cfg.video_frame_step, cfg.lr_patch_px)
    return [(p.lr, p.hr) for p in pictures[:4]]


@torch.inference_mode()
def validate(net: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    """Mean Y-PSNR (dB, ``scale`` px shaved) of the network on whole validation images."""
    net.eval()
    run = network_upscaler(net)
    scores = [psnr_y(run(lr), hr, scale) for lr, hr in pairs]
    net.train()
    return float(np.mean(scores))


def checkpoint(path: Path, net, opt, state: dict[str, Any], rng: np.random.Generator) -> None:
    """Write a branch's checkpoint atomically (a crash mid-write keeps the previous one)."""
    write_checkpoint(path, {"model": net.state_dict(), "opt": opt.state_dict()}, state, rng)


def resume(path: Path, net, opt, rng: np.random.Generator) -> dict[str, Any]:
    """Load a branch's checkpoint if there is one; returns the training state (step 0 when fresh)."""
    blob, state = read_checkpoint(path, rng)
    if blob:
        net.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
    return state


def write_checkpoint(path: Path, parts: dict[str, Any], state: dict[str, Any], rng: np.random.Generator) -> None:
    """Write ``parts`` (state dicts) with the training ``state`` and random states, atomically."""
    blob = {**parts, "step": state["step"], "elapsed_s": state["elapsed_s"], "history": json.dumps(state["history"]),
            "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(blob, state)`` of the checkpoint at ``path``, with ``rng`` and torch's random state
    restored from it; ``({}, a fresh state)`` if there is none."""
    if not path.exists():
        return {}, {"step": 0, "elapsed_s": 0.0, "history": []}
    blob = torch.load(path, map_location="cpu", weights_only=True)
    rng.bit_generator.state = json.loads(blob["rng"])
    torch.set_rng_state(blob["torch_rng"])
    log.info("resumed %s at step %d", path, blob["step"])
    return blob, {"step": int(blob["step"]), "elapsed_s": float(blob["elapsed_s"]),
                  "history": json.loads(blob["history"])}
