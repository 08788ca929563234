"""ClassSR's class module: a small CNN that reads an LR tile and scores how hard it is to restore,
one probability per SR branch (Kong et al., ClassSR, CVPR 2021).

The layout is ClassSR's: a 4x4 stride-4 conv, three 1x1 convs with LeakyReLU(0.1), a 1x1 conv to
32 channels, a global average pool and a linear layer to the class scores. ``width`` is the
hidden width (ClassSR: 128). The pool makes it take a tile of any size; the pipeline feeds it
each tile's core, as ClassSR feeds it each 32x32 sub-image.

    net = TileClassifier(n_classes=3, width=64)
    probs = net(tiles).softmax(1)        # tiles: (N, 3, h, w) float in [0, 1]

A weights file says its own shape: :func:`classifier_from_state` reads the width and the class
count back from the tensors, so a config only names the file.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.errors import ConfigError
from vsr_stream.models.registry import configured_weights_path, read_weights

POOLED_CHANNELS = 32  # ClassSR's channels before the pool


class TileClassifier(nn.Module):
    def __init__(self, n_classes: int, width: int = 128) -> None:
        super().__init__()
        if n_classes < 2 or width < 1:
            raise ConfigError(f"a tile classifier needs >= 2 classes and width >= 1, got {n_classes}, {width}")
        act = lambda: nn.LeakyReLU(0.1, inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=4), act(),
            nn.Conv2d(width, width, 1), act(),
            nn.Conv2d(width, width, 1), act(),
            nn.Conv2d(width, width, 1), act(),
            nn.Conv2d(width, POOLED_CHANNELS, 1))
        self.scores = nn.Linear(POOLED_CHANNELS, n_classes)

    @property
    def n_classes(self) -> int:
        return self.scores.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) RGB in [0, 1], h and w >= 4 → (N, n_classes) logits."""
        return self.scores(self.features(x).mean(dim=(2, 3)))


def classifier_from_state(state: Mapping[str, torch.Tensor], origin: str = "weights") -> TileClassifier:
    """A :class:`TileClassifier` of the shape ``state`` holds, loaded, in eval mode and frozen.

    Raises ConfigError if ``state`` is not a tile classifier's."""
    try:
        width = int(state["features.0.weight"].shape[0])
        n_classes = int(state["scores.weight"].shape[0])
    except KeyError as e:
        raise ConfigError(f"{origin} is not a tile classifier's (no tensor {e.args[0]!r})") from e
    net = TileClassifier(n_classes, width)
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if own != got:
        raise ConfigError(f"{origin} does not fit a tile classifier of width {width} and {n_classes} classes")
    net.load_state_dict(dict(state))
    net.eval().requires_grad_(False)
    return net


@lru_cache(maxsize=4)
def load_classifier(weights: str) -> TileClassifier:
    """The classifier in ``weights`` (a path or ``@stem``), read once per process (shared: frozen).

    Raises ConfigError if the file is missing or not a classifier's."""
    path = configured_weights_path(weights)
    return classifier_from_state(read_weights(path), f"classifier weights {path}")


MIN_TILE_PX = 4  # the first conv's kernel


@torch.inference_mode()
def classify_tiles(net: TileClassifier, tiles: torch.Tensor, bias: Sequence[float] = ()) -> torch.Tensor:
    """Class (argmax of the logits plus ``bias``, one value per class or none) of each uint8
    (N, h, w, 3) tile: int64 (N,). A tile under :data:`MIN_TILE_PX` on a side (a frame that small)
    is read with its edge pixels repeated."""
    x = tiles.permute(0, 3, 1, 2).float().div_(255.0)
    short_h, short_w = max(0, MIN_TILE_PX - x.shape[2]), max(0, MIN_TILE_PX - x.shape[3])
    if short_h or short_w:
        x = F.pad(x, (0, short_w, 0, short_h), mode="replicate")
    logits = net(x)
    if len(bias):
        logits = logits + torch.tensor(list(bias), dtype=logits.dtype)
    return logits.argmax(dim=1)
