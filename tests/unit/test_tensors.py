"""NumPy arrays as torch tensors: a view of writable memory, a copy of read-only memory."""

from __future__ import annotations

import numpy as np

from vsr_stream.ops.tensors import as_tensor, from_tensor


def test_writable_arrays_are_viewed_and_read_only_ones_copied():
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    view = as_tensor(a)
    view[0, 0, 0] = 99
    assert a[0, 0, 0] == 99  # shared memory
    a.flags.writeable = False
    copy = as_tensor(a)
    copy[0, 0, 1] = 77
    assert a[0, 0, 1] == 1 and copy.tolist()[0][0][0] == 99


def test_back_to_numpy_shares_a_cpu_tensors_memory():
    t = as_tensor(np.zeros((2, 3), np.float32))
    back = from_tensor(t, np)
    t[1, 2] = 5.0
    assert isinstance(back, np.ndarray) and back[1, 2] == 5.0
