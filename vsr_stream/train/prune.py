"""Channel pruning of a trained FSRCNN-PS into a narrower one, calibrated on real patches.

The narrower net keeps the wide net's feature channels that carry the most on these patches
(their RMS times the weights that read them: :func:`vsr_stream.models.fsrcnn.pruned_state`),
then the two layers that read the pruned features are refit by least squares to reproduce the
wide net's outputs there (as in He et al., "Channel Pruning for Accelerating Very Deep Neural
Networks", ICCV 2017): the shrink conv to the wide net's shrunk features, then, on the narrow
net's own expanded features, the tail conv to the wide net's tail output. Measured on the
shipped x4 m = 9 net cut to 40 features (Set5 Y-PSNR, docs/quality.md): 30.969 dB wide,
29.45 by weight magnitude alone, 30.88 calibrated and refit, before any training.

    narrow = untrained_model("fsrcnn-ps-40-m12-y", 4)
    prune_into(twin_of(narrow, wide_state, 4), narrow, lr_patches)   # lr_patches: (N, 3, H, W) in [0, 1]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_stream.errors import ConfigError
from vsr_stream.models.fsrcnn import FSRCNNPS, mapping_layers, pruned_state
from vsr_stream.models.ychannel import YChannel

FIT_SAMPLES = 65_536  # output positions per least-squares fit (each conv has <= 56 * 9 + 1 unknowns per output)


@torch.no_grad()
def prune_into(wide: nn.Module, narrow: nn.Module, lr: torch.Tensor, seed: int = 0) -> None:
    """Load ``narrow`` (an FSRCNN-PS, bare or in :class:`YChannel`, with fewer features than
    ``wide``) with ``wide``'s strongest feature channels on the LR patches ``lr``, and refit its
    shrink and tail convs there.

    Raises:
        ConfigError: either net is not an FSRCNN-PS, or ``narrow`` is not a narrower one of ``wide``.
    """
    wide_core, narrow_core = _core(wide), _core(narrow)
    seen = _record(wide, lr, features=wide_core.body[1], shrunk=wide_core.body[2],
                   expanded=wide_core.body[-1], tail=wide_core.tail)
    activity = {k: seen[k].double().pow(2).mean((0, 2, 3)).sqrt().float() for k in ("features", "expanded")}
    narrow.load_state_dict(pruned_state(wide.state_dict(), narrow.state_dict(), activity))
    gen = torch.Generator().manual_seed(seed)
    _refit(narrow_core.body[2], _record(narrow, lr, x=narrow_core.body[1])["x"], seen["shrunk"], gen)
    _refit(narrow_core.tail, _record(narrow, lr, x=narrow_core.body[-1])["x"], seen["tail"], gen)


def twin_of(narrow: nn.Module, state: dict[str, torch.Tensor], scale: int) -> nn.Module:
    """The FSRCNN-PS of ``narrow``'s kind (bare or luma, guided or not) whose widths and depth
    are ``state``'s, loaded with ``state``: the wide net to :func:`prune_into` ``narrow`` from.

    Raises:
        ConfigError: ``state`` is not such a net's weights.
    """
    core = _core(narrow)
    prefix = "net." if isinstance(narrow, YChannel) else ""
    try:
        features, shrink = state[f"{prefix}body.0.weight"].shape[0], state[f"{prefix}body.2.weight"].shape[0]
        wide_core = FSRCNNPS(scale, features, shrink, len(mapping_layers(state)), core.image_channels,
                             core.guide.in_channels if core.guide is not None else 0)
        wide = YChannel(wide_core, scale, chroma_guide=narrow.chroma_guide) if prefix else wide_core
        wide.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(f"cannot prune: the weights are not an FSRCNN-PS of the model's kind ({exc})") from exc
    return wide.eval()


def _core(net: nn.Module) -> FSRCNNPS:
    core = net.net if isinstance(net, YChannel) else net
    if not isinstance(core, FSRCNNPS):
        raise ConfigError(f"cannot prune: {type(core).__name__} is not an FSRCNN-PS")
    return core


def _record(net: nn.Module, lr: torch.Tensor, **layers: nn.Module) -> dict[str, torch.Tensor]:
    """Each named layer's output while ``net`` runs on ``lr`` (in eval mode)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
             for name, layer in layers.items()]
    was_training = net.training
    try:
        net.eval()
        net(lr)
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return seen


def _refit(conv: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
    """Set ``conv``'s weight and bias to the least-squares fit of ``conv(x) = y`` over up to
    :data:`FIT_SAMPLES` output positions drawn with ``gen`` (float64 normal equations solved by SVD)."""
    k, pad = conv.kernel_size[0], conv.padding[0]
    cols = F.unfold(x, k, padding=pad).transpose(1, 2).reshape(-1, x.shape[1] * k * k)
    target = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    pick = torch.randperm(cols.shape[0], generator=gen)[:FIT_SAMPLES]
    design = torch.cat([cols[pick].double(), torch.ones(len(pick), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, target[pick].double(), driver="gelsd").solution
    conv.weight.copy_(solution[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
    conv.bias.copy_(solution[-1].to(conv.bias.dtype))
