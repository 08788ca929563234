"""`vsr-stream train-classifier`: ClassSR's learned class module, and its three-stage schedule.

Stage 1 is the branches' own training (`vsr-stream train`, one branch per class); this run takes
their weights. Stage 2 trains the class module with the branches frozen; stage 3 trains the class
module and the branches together at a low learning rate. In both, a patch's output is the
branches' outputs weighted by the class module's softmax probabilities (so the loss reaches the
class module), and the loss is ClassSR's:

    loss = l1_weight * L1(sum_k p_k SR_k, HR) + class_weight * class_loss(p) + average_weight * average_loss(p)

At inference each tile goes to its most probable class only (``classify.classifier``).

Outputs in ``out_dir/name/``: ``classifier.safetensors``, ``branch<k>.safetensors`` (the branches
after stage 3), ``ckpt.pt`` (resume), ``log.jsonl`` (validation as it goes), ``summary.json`` and
``preset.toml`` (a pipeline config routing by the trained classifier); ``stage2/`` holds the
classifier, branches and preset as they were at the end of stage 2.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vsr_stream.config import ClassifierTrainConfig
from vsr_stream.models import build_model, get, save_weights
from vsr_stream.models.classifier import TileClassifier
from vsr_stream.train.data import PatchBank, load_pictures, sample_batch
from vsr_stream.train.trainer import lr_at, read_checkpoint, set_lr, trainable, write_checkpoint

log = logging.getLogger(__name__)


def class_loss(probs: torch.Tensor) -> torch.Tensor:
    """ClassSR's Class-Loss of (B, M) class probabilities: the batch mean of
    ``(M - 1) - sum_{i<j} |p_i - p_j|``, 0 for one-hot rows and M - 1 for uniform ones. It pushes
    each patch to a clear class, so that training sees the choice inference will make."""
    m = probs.shape[1]
    gaps = (probs[:, :, None] - probs[:, None, :]).abs().sum(dim=(1, 2)) / 2  # each pair once
    return ((m - 1) - gaps).mean()


def average_loss(probs: torch.Tensor) -> torch.Tensor:
    """ClassSR's Average-Loss of (B, M) class probabilities: ``sum_j |sum_i p_ij - B/M| / (4 B / M)``
    (the normalisation of ClassSR's code, so that its weight of 6 carries over). 0 when the batch
    spreads evenly over the classes; it keeps the class module from sending every patch to the
    strongest branch."""
    b, m = probs.shape
    return (probs.sum(dim=0) - b / m).abs().sum() / (4 * b / m)


def weighted_output(probs: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """``sum_k p_k SR_k``: (B, M) probabilities, M outputs of shape (B, C, H, W)."""
    return sum(probs[:, k, None, None, None] * sr for k, sr in enumerate(outputs))


def classsr_loss(cfg: ClassifierTrainConfig, probs: torch.Tensor, outputs: list[torch.Tensor],
                 hr: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss at ``step`` and its three parts (as floats, for the log)."""
    l1 = F.l1_loss(weighted_output(probs, outputs), hr)
    lc, la = class_loss(probs), average_loss(probs)
    class_weight = cfg.class_weight if step >= cfg.class_loss_from else 0.0
    total = cfg.l1_weight * l1 + class_weight * lc + cfg.average_weight * la
    return total, {"l1": l1.item(), "class": lc.item(), "average": la.item()}


def train_classifier(cfg: ClassifierTrainConfig, show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) stages 2 and 3; returns the summary also written to ``summary.json``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    branches = [build_model(b.model, cfg.scale, weights=b.weights) for b in cfg.branches]  # fails fast
    torch.manual_seed(cfg.seed)  # before the class module's initialisation
    net = trainable(TileClassifier(len(branches), cfg.width))
    rng = np.random.default_rng(cfg.seed)
    pictures = load_pictures(cfg.data, cfg.scale, 0, cfg.video_frame_step, cfg.lr_patch_px)
    bank = PatchBank(pictures, cfg.lr_patch_px, cfg.patch_pool, rng)
    everyone = np.arange(len(bank.tvat))
    opts = {2: torch.optim.Adam(net.parameters(), lr=cfg.lr),
            3: torch.optim.Adam([*net.parameters(), *(p for b in branches for p in b.parameters())], lr=cfg.joint_lr)}
    state = _resume(out / "ckpt.pt", net, branches, opts, rng)
    total = cfg.classify_steps + cfg.joint_steps
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=state["step"], desc="classifier", unit="step")
    t_resume, elapsed0 = time.monotonic(), state["elapsed_s"]
    parts: list[dict[str, float]] = []
    while state["step"] < total:
        step = state["step"]
        stage = 2 if step < cfg.classify_steps else 3
        if stage == 3 and not branches[0].training:
            _start_stage_3(cfg, out, net, branches)
        _set_stage_lr(cfg, opts[stage], stage, step)
        lr_b, hr_b = sample_batch(bank, everyone, cfg.batch, cfg.scale, rng)
        x = torch.from_numpy(lr_b)
        with torch.set_grad_enabled(stage == 3):
            outputs = [b(x) for b in branches]
        probs = net(x).softmax(dim=1)
        loss, logged = classsr_loss(cfg, probs, outputs, torch.from_numpy(hr_b), step)
        opts[stage].zero_grad(set_to_none=True)
        loss.backward()
        opts[stage].step()
        parts.append(logged)
        state["step"] += 1
        state["elapsed_s"] = elapsed0 + time.monotonic() - t_resume
        if bar is not None:
            bar.update(1)
        done = state["step"] == total
        if state["step"] % cfg.validate_every == 0 or done or state["step"] == cfg.classify_steps:
            record = _record(cfg, out, state, stage, parts, net, branches)
            parts = []
            if bar is not None and "val_psnr_db" in record:
                bar.set_postfix(val=f"{record['val_psnr_db']:.2f}dB", macs=f"{record['val_macs_per_hr_px']:.0f}")
        if state["step"] % cfg.checkpoint_every == 0 or done:
            _checkpoint(out / "ckpt.pt", net, branches, opts, state, rng)
    if bar is not None:
        bar.close()
    _export(cfg, out, net, branches)
    summary = {"name": cfg.name, "scale": cfg.scale, "step": state["step"], "elapsed_s": round(state["elapsed_s"], 1),
               "history": state["history"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _start_stage_3(cfg: ClassifierTrainConfig, out: Path, net: TileClassifier, branches: list[torch.nn.Module]) -> None:
    """Keep stage 2's result in ``stage2/`` (to compare with stage 3's; once), then let the branches train."""
    if not (out / "stage2" / "preset.toml").exists():
        (out / "stage2").mkdir(exist_ok=True)
        _export(cfg, out / "stage2", net, branches)
    for b in branches:
        trainable(b)


def _record(cfg: ClassifierTrainConfig, out: Path, state: dict[str, Any], stage: int, parts: list[dict[str, float]],
            net: TileClassifier, branches: list[torch.nn.Module]) -> dict[str, Any]:
    """The log record of this validation step (loss parts averaged since the last one, and the
    routed pipeline's validation), appended to the history and to ``log.jsonl``."""
    record = {"step": state["step"], "stage": stage, "elapsed_s": round(state["elapsed_s"], 1),
              **{k: float(np.mean([p[k] for p in parts])) for k in parts[0]}, **validate(cfg, net, branches)}
    state["history"].append(record)
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return record


def _set_stage_lr(cfg: ClassifierTrainConfig, opt: torch.optim.Optimizer, stage: int, step: int) -> None:
    if stage == 2:
        set_lr(opt, lr_at(step, cfg.lr, cfg.lr_final_ratio, cfg.classify_steps))
    else:
        set_lr(opt, lr_at(step - cfg.classify_steps, cfg.joint_lr, cfg.lr_final_ratio, cfg.joint_steps))


def routed_pipeline(cfg: ClassifierTrainConfig, classifier: str | Path, branches: list[str | Path]) -> dict[str, Any]:
    """A pipeline config routing by the classifier file to the branch weight files."""
    return {"scale": cfg.scale, "tiling": cfg.val_tiling.model_dump(), "classify": {"classifier": str(classifier)},
            "upscale": {"branches": [{"model": b.model, "merge_px": cfg.val_merge_px,
                                      **({"weights": str(w)} if get(b.model).learned else {})}
                                     for b, w in zip(cfg.branches, branches)]}}


def validate(cfg: ClassifierTrainConfig, net: TileClassifier, branches: list[torch.nn.Module]) -> dict[str, Any]:
    """The routed pipeline's PSNR, multiply-adds and class shares on the validation set ({} without one)."""
    if cfg.val_root is None:
        return {}
    from vsr_stream.models.classifier import load_classifier
    from vsr_stream.quality.evaluate import run_eval

    with tempfile.TemporaryDirectory() as tmp:
        paths = _save_all(Path(tmp), net, branches)
        load_classifier.cache_clear()  # the same temporary path may name new weights
        result = run_eval([cfg.val_set], cfg.scale, cfg.val_root, "pipeline",
                          config=routed_pipeline(cfg, paths[0], paths[1:]))[cfg.val_set]
        load_classifier.cache_clear()
    cost = result.cost
    return {"val_psnr_db": result.mean_psnr_db, "val_macs_per_hr_px": cost.macs_per_hr_px,
            "val_class_shares": [round(s, 4) for s in cost.class_shares]}


def _save_all(folder: Path, net: TileClassifier, branches: list[torch.nn.Module]) -> list[Path]:
    paths = [folder / "classifier.safetensors"] + [folder / f"branch{k}.safetensors" for k in range(len(branches))]
    for module, path in zip((net, *branches), paths):
        save_weights(module, path)
    return paths


def _export(cfg: ClassifierTrainConfig, out: Path, net: TileClassifier, branches: list[torch.nn.Module]) -> None:
    paths = _save_all(out, net, branches)
    preset = routed_pipeline(cfg, paths[0].resolve(), [p.resolve() for p in paths[1:]])
    lines = [f"# Routed by the ClassSR classifier of `vsr-stream train-classifier` run {cfg.name!r}.",
             f"scale = {cfg.scale}", "", "[tiling]"]
    lines += [f"{k} = {v}" for k, v in preset["tiling"].items()]
    lines += ["", "[classify]", f'classifier = "{preset["classify"]["classifier"]}"', ""]
    for b in preset["upscale"]["branches"]:
        lines += ["[[upscale.branches]]", f'model = "{b["model"]}"', f"merge_px = {b['merge_px']}"]
        lines += [f'weights = "{b["weights"]}"', ""] if "weights" in b else [""]
    (out / "preset.toml").write_text("\n".join(lines))


def _checkpoint(path: Path, net, branches, opts, state: dict[str, Any], rng: np.random.Generator) -> None:
    parts = {"classifier": net.state_dict(), "branches": [b.state_dict() for b in branches],
             "opts": {str(k): o.state_dict() for k, o in opts.items()}}
    write_checkpoint(path, parts, state, rng)


def _resume(path: Path, net, branches, opts, rng: np.random.Generator) -> dict[str, Any]:
    blob, state = read_checkpoint(path, rng)
    if blob:
        net.load_state_dict(blob["classifier"])
        for b, s in zip(branches, blob["branches"]):
            b.load_state_dict(s)
        for k, o in opts.items():
            o.load_state_dict(blob["opts"][str(k)])
    return state
