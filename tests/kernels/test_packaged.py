"""The kernel sources and config presets ship inside the wheel and load from the installed package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vsr_stream.resources import resource_dir

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_SOURCES = sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the build backend) is not installed: cannot build the wheel offline")
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("vsr_stream-*.whl")
    return built


def test_wheel_ships_kernels_presets_and_weights(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"vsr_stream/kernels/{name}" for name in CHECKOUT_SOURCES} | {"vsr_stream/configs/default.toml"}
    weights = sorted((ROOT / "vsr_stream" / "models" / "weights").iterdir())
    expected |= {f"vsr_stream/models/weights/{p.name}" for p in weights}  # weights and their cards
    assert {"tvat.cu", "blend.cu"} <= set(CHECKOUT_SOURCES) and weights
    assert expected <= names, sorted(expected - names)


def test_installed_package_loads_every_kernel_source(wheel: Path, tmp_path: Path):
    # A pure-Python wheel installs by unpacking it; run from elsewhere so the checkout is not on the path.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import vsr_stream.resources as r; d = r.resource_dir('kernels'); print(r.__file__); "
        "print(*(f'{p.name} {p.read_text()!r}' for p in sorted(d.glob('*.cu'))), sep='\\n')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": ""})
    assert done.returncode == 0, done.stderr
    module_file, *loaded = done.stdout.splitlines()
    assert Path(module_file).is_relative_to(site)
    expected = [f"{p.name} {p.read_text()!r}" for p in sorted((ROOT / "kernels").glob("*.cu"))]
    assert loaded == expected


def test_importable_package_finds_every_kernel_source():
    assert sorted(p.name for p in resource_dir("kernels").glob("*.cu")) == CHECKOUT_SOURCES
