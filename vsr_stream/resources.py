"""Files that ship inside the package: config presets and CUDA kernel sources.

In a wheel they live at ``vsr_stream/configs`` and ``vsr_stream/kernels`` (see the
force-include rule in pyproject.toml); in a source checkout at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Directory of shipped resource ``name`` ('configs' or 'kernels')."""
    inside = _PKG / name
    if inside.is_dir():
        return inside
    return _PKG.parent / name


def preset_path(name: str) -> Path | None:
    """Path of the preset ``name`` (with or without ``.toml``), or None if there is none."""
    stem = name.removesuffix(".toml")
    if "/" in stem or "\\" in stem:
        return None
    path = resource_dir("configs") / f"{stem}.toml"
    return path if path.is_file() else None


def preset_names() -> list[str]:
    return sorted(p.stem for p in resource_dir("configs").glob("*.toml"))
