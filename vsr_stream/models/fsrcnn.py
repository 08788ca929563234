"""FSRCNN (Dong et al., ECCV 2016), in the sizes ClassSR (Kong et al., CVPR 2021) uses as branches.

Layout: feature extraction 5x5 conv (3 -> d), shrink 1x1 (d -> s), ``m`` mapping 3x3 convs
(s -> s), expand 1x1 (s -> d), each followed by a per-channel PReLU, then a 9x9 transposed
conv of stride ``scale`` back to 3 channels. ClassSR's branches are d = 16, 36, 56 with
s = 12, m = 4.

FSRCNN-PS keeps that body but replaces the deconv by a sub-pixel tail (3x3 conv to
``3 * scale**2`` channels, then pixel shuffle) and adds a global bicubic skip, so the network
only learns the residual over bicubic: it trains much faster and at x2 costs fewer
multiply-adds than the deconv.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from vsr_stream.errors import ConfigError, ModelInputError
from vsr_stream.models.dtypes import PReLU, learned_dtype
from vsr_stream.models.interp import Bicubic
from vsr_stream.models.registry import ModelDescriptor

SCALES = (2, 3, 4)
SHRINK_CHANNELS = 12
N_MAP_LAYERS = 4
_DECONV_KERNEL_PX = 9
_DECONV_PADDING_PX = _DECONV_KERNEL_PX // 2


class FSRCNN(nn.Module):
    """FSRCNN: ``(N, 3, H, W)`` -> ``(N, 3, H*scale, W*scale)``, any H, W >= 1; no clamping.

    The output has the input's dtype; the layers run in their parameters' dtype (float32 as
    built, narrower after :func:`~vsr_stream.models.dtypes.learned_layers_to`). Initialised as in
    the paper: convs normal with std sqrt(2 / (out_channels * k * k)), the deconv normal with std 0.001,
    biases zero, PReLU slopes 0.25.
    """

    def __init__(
        self,
        scale: int,
        feature_channels: int,
        shrink_channels: int = SHRINK_CHANNELS,
        n_map_layers: int = N_MAP_LAYERS,
    ) -> None:
        super().__init__()
        self.body = _body(feature_channels, shrink_channels, n_map_layers)
        # output_padding = scale - 1 makes the output exactly H*scale: (H-1)*s - 2*4 + 9 + s-1.
        self.upsample = nn.ConvTranspose2d(
            feature_channels, 3, _DECONV_KERNEL_PX, stride=scale, padding=_DECONV_PADDING_PX, output_padding=scale - 1
        )
        self._init_as_paper()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.body(x.to(learned_dtype(self.body, x)))).to(x.dtype)

    def _init_as_paper(self) -> None:
        _init_body_as_paper(self.body)
        nn.init.normal_(self.upsample.weight, std=1e-3)
        nn.init.zeros_(self.upsample.bias)


class FSRCNNPS(nn.Module):
    """FSRCNN body, pixel-shuffle tail, bicubic skip: ``(N, 3, H, W)`` -> ``(N, 3, H*scale, W*scale)``.

    Any H, W >= 1; no clamping. Output is ``shuffle(tail(body(x))) + bicubic(x)`` (bicubic as
    :class:`interp.Bicubic`): the learned residual in its parameters' dtype, the bicubic skip and
    the sum in the input's, so float32 input keeps the skip exact when the layers run in bf16
    (:func:`~vsr_stream.models.dtypes.learned_layers_to`). The body is
    initialised as FSRCNN's; the tail normal with std 0.001 and zero bias, so an untrained
    model starts as bicubic.
    """

    def __init__(
        self,
        scale: int,
        feature_channels: int,
        shrink_channels: int = SHRINK_CHANNELS,
        n_map_layers: int = N_MAP_LAYERS,
        image_channels: int = 3,
        guide_channels: int = 0,
        n_point_layers: int = 0,
        tail_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.scale, self.image_channels = scale, image_channels
        self.skip = Bicubic(scale)
        self.body = _body(feature_channels, shrink_channels, n_map_layers, image_channels, n_point_layers)
        # The tail is 3x3 by default; 1x1 makes each output pixel a per-pixel linear map of the
        # expanded features, which at x4 cuts a 36-wide net's tail from 324 to 36 multiply-adds
        # per HR pixel (most of the work of a narrow branch; see docs/quality.md).
        if tail_kernel not in (1, 3):
            raise ModelInputError(f"FSRCNN-PS: tail_kernel must be 1 or 3, not {tail_kernel}")
        self.tail = nn.Conv2d(feature_channels, image_channels * scale * scale, tail_kernel, padding=tail_kernel // 2)
        self.shuffle = nn.PixelShuffle(scale)
        _init_body_as_paper(self.body)
        nn.init.normal_(self.tail.weight, std=1e-3)
        nn.init.zeros_(self.tail.bias)
        # Guide channels (e.g. the chroma of a luma network) enter the first features through a
        # 1x1 conv, added before the first PReLU; they are read, not upscaled. Zero at the start,
        # so weights of the same net without a guide load as exactly the same function.
        self.guide = nn.Conv2d(guide_channels, feature_channels, 1) if guide_channels else None
        if self.guide is not None:
            nn.init.zeros_(self.guide.weight)
            nn.init.zeros_(self.guide.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is (N, image_channels + guide_channels, H, W); the output has image_channels."""
        return self.shuffle(self.residual(x)) + self.skip(x[:, : self.image_channels])

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The learned residual before its pixel shuffle: (N, image_channels * scale**2, H, W)
        in ``x``'s dtype (the layers run in their own: see vsr_stream.models.dtypes)."""
        learned = learned_dtype(self.body, x)
        if self.guide is None:
            return self.tail(self.body(x.to(learned))).to(x.dtype)
        image, guide = x[:, : self.image_channels], x[:, self.image_channels:]
        features = self.body[1:](self.body[0](image.to(learned)) + self.guide(guide.to(learned)))
        return self.tail(features).to(x.dtype)


def _body(feature_channels: int, shrink_channels: int, n_map_layers: int, image_channels: int = 3,
          n_point_layers: int = 0) -> nn.Sequential:
    """Feature extraction, shrink, mapping and expand layers, each followed by a PReLU. The
    mapping is ``n_map_layers`` 3x3 convs, then ``n_point_layers`` 1x1 ones (s -> s): per-pixel
    depth at 1/9 of a 3x3 layer's multiply-adds, no wider receptive field."""
    d, s = feature_channels, shrink_channels
    layers = [*_conv_prelu(image_channels, d, 5), *_conv_prelu(d, s, 1)]
    for _ in range(n_map_layers):
        layers += _conv_prelu(s, s, 3)
    for _ in range(n_point_layers):
        layers += _conv_prelu(s, s, 1)
    layers += _conv_prelu(s, d, 1)
    return nn.Sequential(*layers)


_ANY_MAPPING = ((3, 3), (1, 1))  # the 3x3 mapping layers and the pointwise ones
_BODY_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?body)\.(?P<index>\d+)\.(?P<param>weight|bias)$")


def deepened_state(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s FSRCNN weights made to fit ``target``, a deeper mapping of the same body.

    Net2Net's identity layers: the extra mapping layers go after the last trained one, each a
    conv of ``target``'s kernel there (3x3, or 1x1 for pointwise mapping layers) that passes
    channel c to channel c (centre tap 1, the rest and the bias 0)
    and a PReLU of slope 1, so the deeper network computes exactly what ``source`` did and
    training starts from there. Every other tensor (feature, shrink, expand, tail, skip) is
    carried over; the expand layer moves down by the added layers.

    Raises:
        ConfigError: ``source`` is not an FSRCNN body of ``target``'s widths with fewer mapping layers.
    """
    prefix = fsrcnn_body(target, "the model", "deepen")
    fsrcnn_body(source, "the weights", "deepen")
    src_map, tgt_map = (mapping_layers(state, kernels=_ANY_MAPPING) for state in (source, target))
    if len(tgt_map) <= len(src_map):
        raise ConfigError(f"cannot deepen: the weights have {len(src_map)} mapping layer(s), the model "
                          f"{len(tgt_map)}; 'deepen' needs a shallower FSRCNN of the same widths")
    shift = 2 * (len(tgt_map) - len(src_map))
    first_new, after_src = src_map[-1] + 2, src_map[-1] + 2
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        m = _BODY_KEY.match(key)
        if m and int(m["index"]) >= after_src:
            key = f"{m['prefix']}.{int(m['index']) + shift}.{m['param']}"
        out[key] = value
    for index in range(first_new, first_new + shift, 2):
        weight = torch.zeros_like(target[f"{prefix}.{index}.weight"])
        channels = weight.shape[0]
        weight[torch.arange(channels), torch.arange(channels), weight.shape[2] // 2, weight.shape[3] // 2] = 1
        out[f"{prefix}.{index}.weight"] = weight
        out[f"{prefix}.{index}.bias"] = torch.zeros(channels)
        out[f"{prefix}.{index + 1}.weight"] = torch.ones(channels)
    wrong = sorted(k for k in target if k not in out or tuple(out[k].shape) != tuple(target[k].shape))
    if wrong or out.keys() - target.keys():
        raise ConfigError(f"cannot deepen: the weights do not fit the model's other layers ({', '.join(wrong[:4]) or 'extra keys'})")
    return out


def pruned_state(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                 activity: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``source``'s FSRCNN weights cut down to ``target``'s narrower feature width ``d`` (and
    deepened by identity layers, as :func:`deepened_state`, when ``target`` has more mapping layers).

    Pruning of whole channels: each feature layer keeps the ``d`` channels that carry the most
    into the next layer, ``size x |reading weights|`` (the L2 norm of the shrink or tail
    weights that read the channel). The size is the channel's RMS on real pictures where
    ``activity`` gives it (``{"features": (D,), "expanded": (D,)}``, as
    :func:`vsr_stream.train.prune.prune_into` measures), else the L2 norm of the weights that
    make it. A guide conv (chroma-guided nets) loses the same rows as the feature conv. The
    result is close to ``source``'s function, not equal to it (:func:`vsr_stream.train.prune.prune_into`
    refits the layers that read the pruned channels); training recovers the rest.

    Raises:
        ConfigError: ``source`` is not an FSRCNN of ``target``'s layout with at least as many features.
    """
    src = dict(source)
    head = fsrcnn_body(target, "the model", "prune", tail=True)
    if fsrcnn_body(src, "the weights", "prune", tail=True) != head:
        raise ConfigError("cannot prune: the weights and the model wrap their FSRCNN-PS differently (luma / RGB)")
    outer = head[: -len("body")]
    src_map = mapping_layers(src)
    d_src, d_tgt = src[f"{head}.0.weight"].shape[0], target[f"{head}.0.weight"].shape[0]
    if d_tgt > d_src:
        raise ConfigError(f"cannot prune: the model has {d_tgt} feature channels, more than the weights' {d_src}")
    expand = src_map[-1] + 2

    def norms(w: torch.Tensor, dim: int) -> torch.Tensor:
        return w.transpose(0, dim).flatten(1).norm(dim=1)

    size = dict(activity) if activity is not None else {
        "features": norms(src[f"{head}.0.weight"], 0), "expanded": norms(src[f"{head}.{expand}.weight"], 0)}
    keep_head = _strongest(size["features"] * norms(src[f"{head}.2.weight"], 1), d_tgt)
    keep_tail = _strongest(size["expanded"] * norms(src[f"{outer}tail.weight"], 1), d_tgt)
    rows = {f"{head}.0.weight": keep_head, f"{head}.0.bias": keep_head, f"{head}.1.weight": keep_head,
            f"{outer}guide.weight": keep_head, f"{outer}guide.bias": keep_head,
            f"{head}.{expand}.weight": keep_tail, f"{head}.{expand}.bias": keep_tail,
            f"{head}.{expand + 1}.weight": keep_tail}
    columns = {f"{head}.2.weight": keep_head, f"{outer}tail.weight": keep_tail}
    for key, kept in rows.items():
        if key in src:
            src[key] = src[key][kept].clone()
    for key, kept in columns.items():
        src[key] = src[key][:, kept].clone()
    if len(mapping_layers(target)) > len(src_map):
        return deepened_state(src, target)
    wrong = sorted(k for k in target if k not in src or tuple(src[k].shape) != tuple(target[k].shape))
    if wrong or src.keys() - target.keys():
        raise ConfigError(f"cannot prune: the weights do not fit the model's other layers ({', '.join(wrong[:4]) or 'extra keys'})")
    return src


def _strongest(importance: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest entries of ``importance``, in their original order."""
    return torch.sort(torch.topk(importance, count).indices).values


def fsrcnn_body(state: Mapping[str, torch.Tensor], what: str, action: str, tail: bool = False) -> str:
    """The key prefix of ``state``'s FSRCNN body (``"body"``, ``"net.body"``): the one whose
    layer 0 is a 5x5 conv and layer 2 a 1x1 conv; with ``tail``, an FSRCNN-PS's (a ``tail`` conv beside it).

    Raises:
        ConfigError: ``state`` (``what``, e.g. "the weights") has no such body, so it cannot ``action``.
    """
    for prefix in sorted({m["prefix"] for m in map(_BODY_KEY.match, state) if m}):
        first, shrink = state.get(f"{prefix}.0.weight"), state.get(f"{prefix}.2.weight")
        if (first is not None and shrink is not None and first.ndim == shrink.ndim == 4
                and tuple(first.shape[2:]) == (5, 5) and tuple(shrink.shape[2:]) == (1, 1)
                and mapping_layers(state) and (not tail or f"{prefix[:-len('body')]}tail.weight" in state)):
            return prefix
    kind = "an FSRCNN-PS" if tail else "an FSRCNN"
    raise ConfigError(f"cannot {action}: {what} {'are' if what.endswith('s') else 'is'} not {kind}")


def mapping_layers(state: Mapping[str, torch.Tensor], kernels: tuple[tuple[int, int], ...] = ((3, 3),)) -> list[int]:
    """Body indices of the mapping convs: convs s -> s after the shrink layer, of the ``kernels``
    sizes (by default the 3x3 ones; ``(1, 1)`` adds the pointwise mapping layers)."""
    found = []
    for key, value in state.items():
        m = _BODY_KEY.match(key)
        if (m and m["param"] == "weight" and value.ndim == 4 and tuple(value.shape[2:]) in kernels
                and value.shape[0] == value.shape[1]):
            found.append(int(m["index"]))
    return sorted(found)


def _init_body_as_paper(body: nn.Sequential) -> None:
    for layer in body:
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            nn.init.normal_(layer.weight, std=math.sqrt(2 / fan_out))
            nn.init.zeros_(layer.bias)


def _conv_prelu(in_channels: int, out_channels: int, kernel_px: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_px, padding=kernel_px // 2)
    return [conv, PReLU(out_channels)]


def receptive_radius_px(scale: int, n_map_layers: int = N_MAP_LAYERS) -> int:
    """LR context (px, every side) a tile needs at ``scale`` for its interior to match the whole frame.

    A body feature at LR position i depends on LR pixels within 2 (the 5x5 conv) +
    ``n_map_layers`` (the 3x3 convs) of i; the 1x1 convs add nothing. So a feature computed
    in a tile equals the whole-frame one iff it lies that far inside the tile. HR pixel o
    of the 9-tap, padding-4, stride-s deconv reads features i with i*s in [o-4, o+4]; for
    the HR pixels of LR pixels [a, b) those are i in [a - floor(4/s), b - 1 + ceil(4/s)].
    Hence 2 + n_map_layers + ceil(4/s): 8 at x2 and x3, 7 at x4 (each is tight).
    """
    return 2 + n_map_layers + math.ceil(_DECONV_PADDING_PX / scale)


def ps_receptive_radius_px(n_map_layers: int = N_MAP_LAYERS, tail_kernel: int = 3) -> int:
    """LR context (px, every side) FSRCNN-PS needs at any scale: 2 + ``n_map_layers`` + ``tail_kernel // 2``.

    The body needs 2 + ``n_map_layers`` (as in :func:`receptive_radius_px`), the 3x3 tail 1
    more (a 1x1 tail none); the pixel shuffle puts HR pixel o at LR pixel floor(o / scale) and
    adds nothing; the bicubic skip needs 2, less than the rest. So 7 at every scale with m = 4 and
    the 3x3 tail, 6 with the 1x1 one (tight).
    """
    return 2 + n_map_layers + tail_kernel // 2


def _descriptor(feature_channels: int) -> ModelDescriptor:
    return ModelDescriptor(
        name=f"fsrcnn-{feature_channels}",
        scales=SCALES,
        builder=partial(FSRCNN, feature_channels=feature_channels),
        learned=True,
        supports_half=True,
        receptive_radius_px=max(receptive_radius_px(scale) for scale in SCALES),
        min_size_px=1,
        description=f"FSRCNN d={feature_channels}, s={SHRINK_CHANNELS}, m={N_MAP_LAYERS} (a ClassSR branch)",
        family="fsrcnn",
    )


def _ps_descriptor(feature_channels: int) -> ModelDescriptor:
    return ModelDescriptor(
        name=f"fsrcnn-ps-{feature_channels}",
        scales=SCALES,
        builder=partial(FSRCNNPS, feature_channels=feature_channels),
        learned=True,
        supports_half=True,
        receptive_radius_px=ps_receptive_radius_px(),
        min_size_px=1,
        description=(
            f"FSRCNN d={feature_channels}, s={SHRINK_CHANNELS}, m={N_MAP_LAYERS} "
            "with a pixel-shuffle tail and a bicubic skip"
        ),
        family="fsrcnn",
    )


FEATURE_CHANNELS = (16, 36, 56)
DESCRIPTORS = tuple(_descriptor(d) for d in FEATURE_CHANNELS) + tuple(_ps_descriptor(d) for d in FEATURE_CHANNELS)
