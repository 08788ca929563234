"""Scoring a per-class (MMSR) run as it went: at each validation step, the branches' snapshot
weights together, routed by TVAT through the full pipeline, give one validation PSNR.

Set against a one-model run's validation log, this answers "how much wall time does each way
take to reach the same PSNR". The branches train in parallel, so the run's wall time at a step
is the slowest branch's elapsed time there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vsr_stream.config import TrainConfig
from vsr_stream.errors import ConfigError
from vsr_stream.train.trainer import branch_dir, snapshot_path


def routed_config(cfg: TrainConfig, weights: list[str | Path], tiling: dict[str, int] | None = None) -> dict[str, Any]:
    """A pipeline config running ``weights`` (one per branch) behind the run's TVAT classes."""
    classes = json.loads((Path(cfg.out_dir) / cfg.name / "classes.json").read_text())
    return {"scale": cfg.scale, "tiling": tiling or {},
            "classify": {"vsp_threshold": cfg.vsp_threshold, "tvat_thresholds": classes["tvat_thresholds"]},
            "upscale": {"branches": [{"model": b.model, "weights": str(w)} for b, w in zip(cfg.branches, weights)]}}


def routed_history(cfg: TrainConfig, root: str, tiling: dict[str, int] | None = None,
                   set_name: str | None = None) -> list[dict[str, Any]]:
    """[{step, wall_s, psnr_db}] for each step at which every branch left a snapshot.

    Raises ConfigError if a branch has no validation log yet.
    """
    from vsr_stream.quality.evaluate import run_eval

    logs = []
    for k in range(len(cfg.branches)):
        path = branch_dir(cfg, k) / "log.jsonl"
        if not path.exists():
            raise ConfigError(f"{path}: branch {k} has not validated yet")
        logs.append({r["step"]: r["elapsed_s"] for r in map(json.loads, path.read_text().splitlines())})
    steps = sorted(set.intersection(*(set(log) for log in logs)))
    history = []
    for step in steps:
        snaps = [snapshot_path(branch_dir(cfg, k), step) for k in range(len(cfg.branches))]
        if not all(p.exists() for p in snaps):
            continue
        name = set_name or cfg.val_set
        result = run_eval([name], cfg.scale, root, "pipeline", config=routed_config(cfg, snaps, tiling))[name]
        history.append({"step": step, "wall_s": max(log[step] for log in logs), "psnr_db": result.mean_psnr_db,
                        "macs_per_hr_px": result.cost.macs_per_hr_px if result.cost else None})
    return history


def time_to_reach(history: list[dict[str, Any]], psnr_db: float, key: str = "psnr_db",
                  time_key: str = "wall_s") -> float | None:
    """Wall time of the first record at or above ``psnr_db`` (None if never reached)."""
    for record in history:
        if record[key] >= psnr_db:
            return float(record[time_key])
    return None
