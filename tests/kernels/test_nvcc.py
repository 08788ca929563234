"""Every kernels/*.cu compiles with nvcc for sm_80 and sm_90, warning-free, within the harness rules.

nvcc needs no GPU or driver to compile. ``--resource-usage`` lets the test check what the CPU
harness cannot emulate: no kernel may use a barrier (__syncthreads) or shared memory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vsr_stream.resources import resource_dir

SOURCES = sorted(resource_dir("kernels").glob("*.cu"))


def _nvcc() -> str | None:
    return shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")


def test_kernel_sources_exist():
    assert {p.name for p in SOURCES} >= {"tvat.cu", "blend.cu"}


@pytest.mark.skipif(_nvcc() is None, reason="nvcc (CUDA toolkit) is not on PATH nor in /usr/local/cuda/bin")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_compiles_without_barriers_or_shared_memory(source: Path, arch: str, tmp_path: Path):
    cmd = [_nvcc(), f"-arch={arch}", "--std=c++17", "-cubin", "--resource-usage", "-Werror", "all-warnings",
           "-o", str(tmp_path / f"{source.stem}.cubin"), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"
    entries = re.findall(r"Compiling entry function '(\w+)'", done.stderr)
    usage = re.findall(r"Used \d+ registers.*", done.stderr)
    declared = re.findall(r'extern "C" __global__ void (\w+)\(', source.read_text(encoding="utf-8"))
    assert sorted(entries) == sorted(declared) and len(usage) == len(entries)
    for line in usage:
        assert "used 0 barriers" in line and not re.search(r"[1-9]\d* bytes smem", line), line
