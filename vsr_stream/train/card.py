"""Shipping a trained branch: copy its weights into the package and write its model card.

    vsr-stream ship configs/train/x4-one-fsrcnn-ps-56-y.toml --branch 0 --as fsrcnn-ps-56-y_x4

writes ``vsr_stream/models/weights/<stem>.safetensors``, ``<stem>.md`` and ``<stem>.json`` (the card's
numbers for programs: :class:`vsr_stream.models.inference.CardNumbers`). The card states the
model and its cost, the training data and its licence terms, iterations and wall time, the
validation PSNR during training, whole-image Set5/Set14 scores in fp32 and in bf16 (when the
sr-val folder is at hand), and the commands that reproduce the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsr_stream.config import TrainConfig
from vsr_stream.errors import ConfigError
from vsr_stream.models import build_model, get
from vsr_stream.models.dtypes import learned_layers_to
from vsr_stream.models.inference import CardNumbers, card_sidecar_path
from vsr_stream.models.macs import macs_per_output_pixel
from vsr_stream.models.registry import SHIPPED_WEIGHTS_DIR
from vsr_stream.models.ychannel import YChannel
from vsr_stream.train.trainer import branch_dir

LICENCE = (
    "Trained on T91, General-100 and BSD200 (`../shared/data/sr-train`). The BSDS300 images (BSD200) "
    "are offered by their authors for non-commercial research and educational use; T91 and "
    "General-100 were released with research papers without an explicit licence. These weights "
    "inherit those terms: use them for non-commercial research and education, and retrain on data "
    "you may use (`vsr-stream train`) for anything else."
)
EVAL_SETS = ("Set5", "Set14")


def ship(cfg: TrainConfig, config_path: str, branch: int, stem: str, dest: Path = SHIPPED_WEIGHTS_DIR,
         val_root: str | None = None) -> Path:
    """Copy branch ``branch`` of run ``cfg`` to ``dest/<stem>.safetensors`` with its card; returns the card path.

    Raises ConfigError if the branch does not exist, is kept from its init (steps = 0, unless the
    init is a soup: the average is new weights), or has not finished training.
    """
    if not 0 <= branch < len(cfg.branches):
        raise ConfigError(f"--branch {branch}: the run has branches 0..{len(cfg.branches) - 1}")
    run = branch_dir(cfg, branch)
    weights, log_path = run / "weights.safetensors", run / "log.jsonl"
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    steps, soup = cfg.branches[branch].steps, isinstance(cfg.branches[branch].init, list)
    if steps == 0 and not soup:
        raise ConfigError(f"branch {branch} is not trained by this run (steps = 0): it is "
                          f"{cfg.branches[branch].init!r}, ship that instead")
    if not weights.exists() or (steps and (not history or history[-1]["step"] < steps)):
        raise ConfigError(f"{run}: branch {branch} has not finished its {steps} steps; run `vsr-stream train` first")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{stem}.safetensors"
    shutil.copyfile(weights, target)
    scores = _scores(cfg.branches[branch].model, cfg.scale, target, val_root or cfg.val_root,
                     int8=cfg.branches[branch].quantize_aware)
    card = dest / f"{stem}.md"
    card.write_text(render_card(cfg, config_path, branch, stem, target, history, scores), encoding="utf-8")
    card_numbers(cfg.branches[branch].model, cfg.scale, target, scores).write(card_sidecar_path(target))
    return card


def card_numbers(model: str, scale: int, weights: Path, scores: dict[str, dict[str, Any]]) -> CardNumbers:
    """The card's numbers for its machine-readable sidecar (what "auto" precision reads), from ``scores``
    as :func:`_scores` returns them (empty without sr-val: no bf16 cost recorded, so "auto" keeps fp32)."""
    fp32 = {s: round(row["fp32"][0], 4) for s, row in scores.items()}
    bf16 = {s: round(row["bf16"][0], 4) for s, row in scores.items()}
    return CardNumbers(model=model, scale=scale, sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
                       fp32_psnr_db=fp32, bf16_psnr_db=bf16,
                       bf16_cost_db={s: round(row["bf16"][0] - row["fp32"][0], 4) for s, row in scores.items()})


def _scores(model: str, scale: int, weights: Path, root: str | None, int8: bool = False) -> dict[str, dict[str, Any]]:
    """Whole-image {set: {fp32: (psnr, ssim), bf16: (psnr, ssim)}} at the run's scale, with ``int8``
    also {int8: (psnr, ssim)} as an int8 branch quantizes it; {} without sr-val."""
    from vsr_stream.models.quantize import quantize_int8
    from vsr_stream.quality.evaluate import evaluate_pairs, load_sr_val, network_upscaler

    if not root or not (Path(root) / "Set5").is_dir():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for set_name in EVAL_SETS:
        pairs = load_sr_val(root, set_name, scale)
        row = {}
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            net = learned_layers_to(build_model(model, scale, weights=weights), dtype)  # as a bf16 branch runs it
            r = evaluate_pairs(pairs, network_upscaler(net), scale, set_name=set_name, method=label)
            row[label] = (r.mean_psnr_db, r.mean_ssim)
        if int8:
            net = quantize_int8(build_model(model, scale, weights=weights))
            r = evaluate_pairs(pairs, network_upscaler(net), scale, set_name=set_name, method="int8")
            row["int8"] = (r.mean_psnr_db, r.mean_ssim)
        out[set_name] = row
    return out


def render_card(cfg: TrainConfig, config_path: str, branch: int, stem: str, weights: Path,
                history: list[dict[str, Any]], scores: dict[str, dict[str, Any]]) -> str:
    b = cfg.branches[branch]
    desc = get(b.model)
    net = build_model(b.model, cfg.scale, weights=weights)
    macs = macs_per_output_pixel(net, cfg.scale)
    params = sum(p.numel() for p in net.parameters())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    colour = _colour(net)
    n_classes = len(cfg.branches)
    classes = _class_text(cfg, branch)
    lines = [
        f"# {stem}", "",
        f"`{weights.name}` — {desc.description}, ×{cfg.scale}; {colour}.", "",
        "| | |", "|---|---|",
        f"| model | `{b.model}` (registry name) |",
        f"| scale | ×{cfg.scale} |",
        f"| parameters | {params:,} |",
        f"| multiply-adds per output pixel (whole frame) | {macs:,.0f} |",
        f"| receptive radius (LR px) | {desc.receptive_radius_px} |",
        f"| class | {classes} (branch {branch} of {n_classes}) |",
        f"| sha256 | `{digest}` |", "",
        "## Training", "",
        *_training_lines(cfg, config_path, b, history),
        "## Quality (whole image, Y channel, standard protocol)", "",
    ]
    if scores:
        int8 = all("int8" in row for row in scores.values())
        header, rule = "| set | fp32 PSNR / SSIM | bf16 PSNR / SSIM | bf16 cost |", "|---|---|---|---|"
        lines += [header + " int8 PSNR / SSIM | int8 cost |", rule + "---|---|"] if int8 else [header, rule]
        for set_name, row in scores.items():
            (p32, s32), (p16, s16) = row["fp32"], row["bf16"]
            cells = f"| {set_name} ×{cfg.scale} | {p32:.2f} / {s32:.4f} | {p16:.2f} / {s16:.4f} | {p16 - p32:+.3f} dB |"
            if int8:
                p8, s8 = row["int8"]
                cells += f" {p8:.2f} / {s8:.4f} | {p8 - p32:+.3f} dB |"
            lines.append(cells)
        lines += ["", "bf16: the network's layers (weights and activations) in bfloat16 on the CPU; the "
                  "bicubic skip, the sum and the colour transform in float32, as a bf16 branch runs it."
                  + (" int8: `precision = \"int8\"`, the convolutions quantized and calibrated as an int8 branch "
                     "does; these weights were trained for it (quantization-aware)." if int8 else ""),
                  "Through the tiled pipeline see `docs/quality.md` (tiling is seamless: the same numbers "
                  "at the default tiling)."]
    else:
        lines.append("Not scored: the sr-val folder was not available when this card was written.")
    inits = _inits(cfg.branches[branch].init)
    first = [f"The run starts from {', '.join(f'`{p}`' for p in inits)}: make "
             + ("that first (its own config or card)." if len(inits) == 1 else "those first (each its own config or card)."),
             ""] if inits else []
    lines += ["", "## Licence", "", LICENCE, "", "## Reproduce", "", *first, "```",
              f"vsr-stream train {config_path}",
              f"vsr-stream ship {config_path} --branch {branch} --as {stem}", "```",
              "Training is seeded, but thread scheduling makes runs differ slightly.", ""]
    return "\n".join(lines)


def _training_lines(cfg: TrainConfig, config_path: str, b, history: list[dict[str, Any]]) -> list[str]:
    """The card's "Training" bullets: the soup the branch starts from (if any), its own steps, data,
    wall time and validation during training (a soup kept as it is, steps = 0, has none of those)."""
    data = (("- Data (of the runs averaged): " if b.steps == 0 else "- Data: ") + ", ".join(f"`{d}`" for d in cfg.data)
            + (", each picture also made smaller by " + ", ".join(f"{f:g}" for f in cfg.hr_downscales)
               + " (scale augmentation)" if cfg.hr_downscales else "")
            + "; LR made with MATLAB-style antialiased "
            "bicubic (`vsr_stream.quality.imresize`). No validation or test image was trained on.")
    if b.steps == 0:  # only a soup ships with no steps of its own
        return [f"- Run `{cfg.name}` from `{config_path}`: the uniform average of the tensors of "
                + ", ".join(f"`{p}`" for p in b.init) + " (a model soup, Wortsman et al. 2022: fine-tunes of one "
                "network from the same start, averaged), no further training.",
                *(line for init in b.init for line in _earlier_stage(init)), data, ""]
    last = history[-1]
    return [
        f"- Run `{cfg.name}` from `{config_path}`: {last['step']:,} steps of Adam on "
        f"{b.loss.upper()} loss" + (" on luma (Y)" if b.loss_on == "y" else "") + f", learning rate {b.lr:g}"
        + (f" after {b.warmup_steps:,} steps of linear warmup" if b.warmup_steps else "")
        + f" with cosine decay to {cfg.lr_final_ratio:g}×, "
        f"batch {cfg.batch} patches of {cfg.lr_patch_px} LR px ({cfg.lr_patch_px * cfg.scale} HR px)"
        + (f" scored inside {cfg.context_px} LR px of seen context" if cfg.context_px else "") + ", "
        "random flips and rotations"
        + _start(b) + _distilled(b)
        + (", with int8 rounding simulated in every forward pass (quantization-aware)" if b.quantize_aware else "") + ".",
        data,
        f"- Wall time: {last['elapsed_s'] / 60:.1f} min on a 2-core CPU (no GPU).",
        *(line for init in _inits(b.init) for line in _earlier_stage(init)),
        f"- Validation ({cfg.val_set}, whole images, Y-PSNR"
        + (", under the simulated int8 rounding" if b.quantize_aware else "") + ") during training: "
        + ", ".join(f"{h['val_psnr_db']:.2f} dB at {h['step']:,}" for h in _thin(history)) + ".", "",
    ]


def _inits(init: str | list[str] | None) -> list[str]:
    return [] if init is None else [init] if isinstance(init, str) else list(init)


def _class_text(cfg: TrainConfig, branch: int) -> str:
    runs = Path(cfg.out_dir) / cfg.name / "classes.json"
    thresholds = json.loads(runs.read_text())["tvat_thresholds"] if runs.exists() else []
    if not thresholds:
        return "all tiles (one class)"
    lo = f"{thresholds[branch - 1]:.0f}" if branch > 0 else "0"
    hi = f"{thresholds[branch]:.0f}" if branch < len(thresholds) else "∞"
    return f"TVAT in [{lo}, {hi})"


def _thin(history: list[dict[str, Any]], keep: int = 6) -> list[dict[str, Any]]:
    if len(history) <= keep:
        return history
    idx = np.unique(np.linspace(0, len(history) - 1, keep).round().astype(int))
    return [history[i] for i in idx]


def _earlier_stage(init: str | None) -> list[str]:
    """A line on the run that made ``init``, when it is a run's weights with its log beside them."""
    log_path = Path(init).parent / "log.jsonl" if init and not init.startswith("@") else None
    if log_path is None or not log_path.is_file():
        return []
    last = json.loads(log_path.read_text().splitlines()[-1])
    return [f"- Before this stage, `{init}` was trained for {last['step']:,} steps in "
            f"{last['elapsed_s'] / 60:.1f} min (its log: `{log_path}`)."]


def _start(branch) -> str:
    if branch.init is None:
        return ", from random initialisation"
    if branch.init_layers == "matching":
        return f", started from the tensors of `{branch.init}` that fit (the rest initialised as usual)"
    if branch.init_layers == "deepen":
        return (f", started from `{branch.init}` with its mapping deepened by identity layers "
                "(the same function at step 0)")
    if branch.init_layers == "prune":
        return (f", started from `{branch.init}` with its feature channels pruned to this width (the channels "
                "largest on the run's patches kept, the layers reading them refit there by least squares) and "
                "its mapping deepened by identity layers where this net is deeper")
    if isinstance(branch.init, list):
        return ", started from the uniform average of " + ", ".join(f"`{p}`" for p in branch.init) + " (a model soup)"
    return f", started from `{branch.init}`"


def _colour(net) -> str:
    if not isinstance(net, YChannel):
        return "RGB network"
    reads = "; it reads the LR chroma too (1x1 conv into its first features)" if net.chroma_guide else ""
    return f"luma (BT.601 Y) network{reads}; chroma is upscaled bicubically"


def _distilled(branch) -> str:
    if branch.teacher is None:
        return ""
    ensemble = ", averaged over the 8 flips/rotations," if branch.teacher_self_ensemble else ""
    return (f"; distilled from `{branch.teacher}` (`{branch.teacher_model or branch.model}`{ensemble} a second "
            f"target weighted {branch.distill_weight:g} against the HR patch's {1 - branch.distill_weight:g})")
