"""Half-precision branches: output close to fp32, NaN/Inf batches redone in fp32 and counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vsr_stream.config import BranchConfig
from vsr_stream.models.inference import BranchModel


def _windows(n=3, h=11, w=14, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_is_close_to_fp32(precision):
    torch.manual_seed(0)
    fp32 = BranchModel(BranchConfig(model="fsrcnn-ps-36", precision="fp32"), 2, allow_random=True)
    torch.manual_seed(0)
    half = BranchModel(BranchConfig(model="fsrcnn-ps-36", precision=precision), 2, allow_random=True)
    assert next(half.module.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a, b = fp32.upscale(_windows()), half.upscale(_windows())
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
    assert half.fp32_retries == 0


class _OverflowsInHalf(nn.Module):
    """Upscales by repetition; gives Inf whenever its layer is in half precision."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.layer = nn.Parameter(torch.ones(1, dtype=dtype))

    def forward(self, x):
        y = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
        return y * float("inf") if self.layer.dtype != torch.float32 else y


def test_overflowing_batches_are_redone_in_fp32_and_counted(caplog):
    branch = BranchModel(BranchConfig(model="fsrcnn-ps-16", precision="fp16"), 2, allow_random=True)
    assert branch.fallback is not None
    branch.module, branch.fallback = _OverflowsInHalf(torch.float16), _OverflowsInHalf(torch.float32)
    windows = _windows()
    with caplog.at_level("WARNING"):
        out1 = branch.upscale(windows)
        out2 = branch.upscale(windows)
    expected = windows.repeat(2, axis=1).repeat(2, axis=2)
    assert np.array_equal(out1, expected) and np.array_equal(out2, expected)
    assert branch.fp32_retries == 2
    assert sum("fp32" in r.message for r in caplog.records) == 1  # warned once, counted always


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_fallback_copy_where_fp32_would_overflow_too(precision):
    """bf16 has float32's exponent range: a retry in fp32 could not help, so none is kept."""
    branch = BranchModel(BranchConfig(model="fsrcnn-ps-16", precision=precision), 2, allow_random=True)
    assert branch.fallback is None and branch.precision == precision


def test_prelu_computes_narrow_floats_in_float32_on_the_cpu(monkeypatch):
    from vsr_stream.models import dtypes

    torch.manual_seed(0)
    ours, theirs = dtypes.PReLU(6), nn.PReLU(6)
    with torch.no_grad():
        ours.weight.copy_(torch.tensor([-0.8, -0.1, 0.0, 0.3, 1.0, 1.7]))  # trained slopes leave [0, 1]
    theirs.load_state_dict(ours.state_dict())  # the same parameter under the same name
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    prelu = torch.nn.functional.prelu
    with torch.no_grad():
        want32 = theirs(x)
        want16 = prelu(x.bfloat16().float(), ours.weight.bfloat16().float()).bfloat16()
        seen = []  # the dtypes torch's PReLU kernel runs in: never bf16, its slow path on a CPU
        monkeypatch.setattr(dtypes.F, "prelu", lambda v, w: seen.append((v.dtype, w.dtype)) or prelu(v, w))
        assert torch.equal(ours(x), want32)  # float32: nn.PReLU itself
        ours.bfloat16()
        y = ours(x.bfloat16())
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, want16)
    assert seen == [(torch.float32, torch.float32)] * 2


@pytest.mark.parametrize("shape", [(1, 56, 204, 344), (3, 12, 97, 41), (2, 5, 1, 1)])
def test_prelu_in_blocks_of_rows_equals_one_pass(shape, monkeypatch):
    """Large maps go through float32 a block of rows at a time: the same values as in one pass."""
    from vsr_stream.models import dtypes

    torch.manual_seed(1)
    layer = dtypes.PReLU(shape[1]).bfloat16()
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1.0, 2.0, shape[1]))
        x = torch.randn(shape).bfloat16().contiguous(memory_format=torch.channels_last)
        whole = torch.nn.functional.prelu(x.float(), layer.weight.float()).bfloat16()
        for block_bytes in (1, 4096, 1 << 20):  # a row per block, a few rows, one block
            monkeypatch.setattr(dtypes, "_PRELU_CHUNK_BYTES", block_bytes)
            y = layer(x)
            assert torch.equal(y, whole) and y.is_contiguous(memory_format=torch.channels_last)
