"""`vsr-stream train`: TVAT class thresholds from the training patches, then one branch per class,
trained in parallel worker processes (MMSR) or one after another; resumable.

Outputs in ``out_dir/name/``: ``classes.json`` (thresholds with how they were made),
``branch<k>/{ckpt.pt, log.jsonl, weights.safetensors}``, ``summary.json``, ``preset.toml``
(a pipeline config that uses the trained branches).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np

from vsr_stream.cpuinfo import usable_cores
from vsr_stream.config import TrainConfig
from vsr_stream.train.data import patch_bank
from vsr_stream.train.trainer import BranchJob, branch_dir, train_branch

log = logging.getLogger(__name__)


def class_thresholds(cfg: TrainConfig) -> list[float]:
    """TVAT thresholds at ``cfg.class_quantiles`` of the training patches (kept from an earlier sitting)."""
    path = Path(cfg.out_dir) / cfg.name / "classes.json"
    if path.exists():
        return json.loads(path.read_text())["tvat_thresholds"]
    if not cfg.class_quantiles:
        thresholds: list[float] = []
    else:
        thresholds = patch_bank(cfg, np.random.default_rng(cfg.seed)).thresholds(cfg.class_quantiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tvat_thresholds": thresholds, "quantiles": cfg.class_quantiles,
                                "vsp_threshold": cfg.vsp_threshold, "lr_patch_px": cfg.lr_patch_px,
                                "context_px": cfg.context_px,
                                "scale": cfg.scale}, indent=2))
    return thresholds


def run_training(cfg: TrainConfig, show_progress: bool = True) -> dict[str, Any]:
    thresholds = class_thresholds(cfg)
    n = len(cfg.branches)
    parallel = cfg.parallel and n > 1
    threads = cfg.threads or (max(1, usable_cores() // n) if parallel else 0)
    jobs = [BranchJob(cfg.model_dump(mode="json"), k, thresholds, threads, show_progress) for k in range(n)]
    if parallel:
        with mp.get_context("spawn").Pool(n) as pool:
            results = pool.map(train_branch, jobs)
    else:
        results = [train_branch(job) for job in jobs]
    summary = {"name": cfg.name, "scale": cfg.scale, "tvat_thresholds": thresholds, "branches": results}
    run_dir = Path(cfg.out_dir) / cfg.name
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (run_dir / "preset.toml").write_text(preset_toml(cfg, thresholds))
    return summary


def preset_toml(cfg: TrainConfig, thresholds: list[float]) -> str:
    """A pipeline config using this run's branches and class thresholds."""
    lines = [f"# Trained by `vsr-stream train` run {cfg.name!r}.", f"scale = {cfg.scale}", "",
             "[classify]", f"vsp_threshold = {cfg.vsp_threshold}", f"tvat_thresholds = {thresholds}", ""]
    for k, b in enumerate(cfg.branches):
        weights = (branch_dir(cfg, k) / "weights.safetensors").resolve()
        lines += ["[[upscale.branches]]", f'model = "{b.model}"', f'weights = "{weights}"', ""]
    return "\n".join(lines)
