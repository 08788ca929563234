"""Fixtures for the kernel tests: the g++ harness (built once per session) and the emulated CuPy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernels import emulated_cupy
from vsr_stream.ops import _kernels
from vsr_stream.resources import resource_dir

HERE = Path(__file__).resolve().parent
# Sanitizers make an out-of-bounds index in a kernel a test failure instead of silence.
SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")


@pytest.fixture(scope="session")
def gxx() -> str:
    path = shutil.which("g++")
    if path is None:
        pytest.skip("g++ is not on PATH: the CPU harness for the CUDA kernels cannot be built")
    return path


@pytest.fixture(scope="session")
def harness_sanitized(gxx: str, tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Whether this g++ can link AddressSanitizer and UBSan (some toolchains ship without them)."""
    probe = tmp_path_factory.mktemp("probe")
    (probe / "main.cpp").write_text("int main() { return 0; }\n")
    cmd = [gxx, *SANITIZERS, "-o", str(probe / "main"), str(probe / "main.cpp")]
    return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def harness_binary(gxx: str, harness_sanitized: bool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("harness") / "harness"
    cmd = [gxx, "-O1", "-std=c++17", "-Wall", "-Wextra", "-Werror", *(SANITIZERS if harness_sanitized else ()),
           "-include", str(HERE / "cuda_emu.h"), "-I", str(resource_dir("kernels")),
           "-o", str(out), str(HERE / "harness.cpp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"building the kernel harness failed:\n{' '.join(cmd)}\n{done.stderr[-6000:]}")
    return out


@pytest.fixture
def emulated(harness_binary: Path, monkeypatch: pytest.MonkeyPatch):
    """The emulated ``cupy`` installed in ``sys.modules`` (blocks run in order), fresh kernel cache."""
    return _install(harness_binary, monkeypatch, block_order_seed=0)


@pytest.fixture(params=[0, 12345], ids=["blocks-in-order", "blocks-shuffled"])
def emulated_any_order(request: pytest.FixtureRequest, harness_binary: Path, monkeypatch: pytest.MonkeyPatch):
    """:func:`emulated`, once with blocks in order and once shuffled: a GPU promises no order,
    and float atomics make the result depend on it."""
    return _install(harness_binary, monkeypatch, block_order_seed=request.param)


def _install(harness_binary: Path, monkeypatch: pytest.MonkeyPatch, block_order_seed: int):
    harness = emulated_cupy.Harness(harness_binary, block_order_seed)
    fake = emulated_cupy.module(harness, resource_dir("kernels"))
    fake.harness = harness
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_kernels, "_modules", {})
    return fake
