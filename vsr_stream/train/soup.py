"""A uniform model soup: the tensors of several fine-tunes of one network averaged (Wortsman et
al., "Model soups", 2022). Fine-tunes that start from the same weights stay in one basin of the
loss, so their average is a network too, often better than each of them, at no inference cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from vsr_stream.errors import ConfigError


def average_states(states: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``states`` (each a state dict; ``names`` say where each came from).

    Floating tensors are averaged in float64 and returned in their own dtype. Integer tensors
    (counters, e.g. a batch-norm's) must be equal in every state and are kept.

    Raises:
        ConfigError: fewer than two states, or their keys, shapes or dtypes differ (they are not
            fine-tunes of one network); the message names the first file that differs.
    """
    if len(states) != len(names):
        raise ValueError(f"{len(states)} states but {len(names)} names")
    if len(states) < 2:
        raise ConfigError(f"a soup needs two or more weights files, got {len(states)}")
    first = states[0]
    for state, name in zip(states[1:], names[1:]):
        if state.keys() != first.keys():
            diff = sorted(state.keys() ^ first.keys())
            raise ConfigError(f"soup: {name} does not have the tensors of {names[0]} (differ: {diff[:5]})")
        for key, value in state.items():
            if value.shape != first[key].shape or value.dtype != first[key].dtype:
                raise ConfigError(f"soup: {name}'s {key} is {value.dtype} {tuple(value.shape)}, "
                                  f"{names[0]}'s {first[key].dtype} {tuple(first[key].shape)}")
            if not value.is_floating_point() and not torch.equal(value, first[key]):
                raise ConfigError(f"soup: {name}'s {key} (not a float tensor) differs from {names[0]}'s")
    out = {}
    for key, value in first.items():
        if value.is_floating_point():
            out[key] = (sum(s[key].double() for s in states) / len(states)).to(value.dtype)
        else:
            out[key] = value.clone()
    return out
