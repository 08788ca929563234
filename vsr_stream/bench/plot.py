"""The benchmark's picture: fps against Y-PSNR, one point per preset and per naive loop (PNG).

matplotlib is optional (the ``bench`` extra); it is used through its object API on the Agg
canvas, so no GUI backend and no global pyplot state are touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsr_stream.errors import ConfigError


def check_plotting() -> None:
    """Raise ConfigError when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"--plot needs matplotlib ({e}); install it with `pip install 'vsr-stream[bench]'`") from e


def plot_points(result: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(label, psnr_db, fps, is_naive) of every preset and every distinct naive loop of a bench result."""
    points, naive_seen = [], set()
    for r in result["presets"]:
        points.append((_label(r["config"]), r["pipeline_psnr_y_db"], r["pipeline_fps"], False))
        key = (r["naive_model"], r["naive_precision"], r["naive_fps"])
        if key not in naive_seen:
            naive_seen.add(key)
            label = f"naive {r['naive_model']} ({r['naive_precision']})"
            points.append((label, r["naive_psnr_y_db"], r["naive_fps"], True))
    return points


def _label(config: str) -> str:
    """A preset's name, or a config file's stem."""
    return Path(config).stem if Path(config).suffix in (".toml", ".yaml", ".yml", ".json") else config


def plot_fps_psnr(result: dict[str, Any], path: str | Path) -> Path:
    """Write the PNG of ``result`` (a :func:`~vsr_stream.bench.run_bench` result with PSNR) to ``path``."""
    check_plotting()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, psnr, fps, naive in plot_points(result):
        ax.scatter([psnr], [fps], marker="s" if naive else "o", color="tab:grey" if naive else "tab:blue")
        ax.annotate(label, (psnr, fps), textcoords="offset points", xytext=(5, 4), fontsize=8)
    clip = result["clip"]
    ax.set_title(f"{clip['kind']} clip, {clip['lr_size']} -> {clip['hr_size']}, {clip['frames']} frames")
    ax.set_xlabel("Y-PSNR against the HR frames (dB)")
    ax.set_ylabel("frames per second")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
