"""Channel pruning: the weight surgery (vsr_stream.models.fsrcnn.pruned_state) and its calibration
(vsr_stream.train.prune): channel choice by size on pictures, and the least-squares refit of the
layers that read the pruned features."""

from __future__ import annotations

import pytest
import torch

from vsr_stream.errors import ConfigError
from vsr_stream.models import untrained_model
from vsr_stream.models.edsr import EDSR
from vsr_stream.models.fsrcnn import FSRCNN, FSRCNNPS, deepened_state, pruned_state
from vsr_stream.models.ychannel import YChannel
from vsr_stream.train.prune import prune_into, twin_of


def _wide_with_dead_features(dead: torch.Tensor) -> FSRCNNPS:
    """A chroma-guided luma FSRCNN-PS (d = 24) with random weights in which the ``dead`` channels
    of both feature layers never fire (zero weights and bias, so their PReLU output is 0)."""
    torch.manual_seed(0)
    net = FSRCNNPS(3, 24, n_map_layers=2, image_channels=1, guide_channels=2)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        expand = net.body[-2]
        for conv in (net.body[0], net.guide, expand):
            conv.weight[dead] = 0
            conv.bias[dead] = 0
    return net.eval()


def test_pruned_state_drops_the_channels_that_never_fire_and_keeps_the_function():
    """By weight size alone, dead channels are the ones cut: the narrower (and deeper, by an
    identity layer) net computes the same output, chroma guide included."""
    wide = _wide_with_dead_features(torch.tensor([1, 4, 5, 9, 13, 14, 17, 22]))
    narrow = FSRCNNPS(3, 16, n_map_layers=3, image_channels=1, guide_channels=2)
    narrow.load_state_dict(pruned_state(wide.state_dict(), narrow.state_dict()))
    x = torch.rand(2, 3, 11, 13, dtype=torch.float64)  # float64: only the summation order differs
    with torch.no_grad():
        torch.testing.assert_close(narrow.double()(x), wide.double()(x), rtol=1e-10, atol=1e-10)
    assert narrow.guide is not None and narrow.guide.weight.shape[0] == 16


def test_prune_into_finds_the_live_channels_and_keeps_the_function():
    """Channels that never fire are the ones cut, and the refit layers reproduce the wide net
    exactly (the narrow net can express its function); deeper by an identity layer too."""
    dead = torch.tensor([1, 4, 5, 9, 13, 14, 17, 22])
    wide = _wide_with_dead_features(dead)
    narrow = FSRCNNPS(3, 16, n_map_layers=3, image_channels=1, guide_channels=2)
    x = torch.rand(6, 3, 14, 15)
    prune_into(wide, narrow, x)
    live = torch.tensor([c for c in range(24) if c not in dead.tolist()])
    torch.testing.assert_close(narrow.body[0].weight, wide.body[0].weight[live])
    y = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(narrow(y), wide(y), rtol=1e-4, atol=1e-4)


def test_prune_into_beats_weight_magnitude_on_a_net_with_no_dead_channels():
    torch.manual_seed(1)
    wide = FSRCNNPS(2, 32, n_map_layers=2).eval()
    with torch.no_grad():
        for p in wide.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    calibrated, by_magnitude = FSRCNNPS(2, 16, n_map_layers=2), FSRCNNPS(2, 16, n_map_layers=2)
    prune_into(wide, calibrated, torch.rand(8, 3, 16, 16))
    by_magnitude.load_state_dict(pruned_state(wide.state_dict(), by_magnitude.state_dict()))
    x = torch.rand(2, 3, 12, 13)  # other pictures than those it was refit on
    with torch.no_grad():
        err = lambda net: float((net(x) - wide(x)).pow(2).mean())  # noqa: E731
        assert err(calibrated) < 0.5 * err(by_magnitude)


def test_twin_of_builds_the_wide_net_of_the_narrow_ones_kind():
    narrow = untrained_model("fsrcnn-ps-40-m12-y", 4)
    wide = untrained_model("fsrcnn-ps-56-m9-y", 4)
    twin = twin_of(narrow, wide.state_dict(), 4)
    assert isinstance(twin, YChannel) and twin.net.body[0].out_channels == 56 and not twin.training
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        assert torch.equal(twin(x), wide.eval()(x))
    with pytest.raises(ConfigError, match="not an FSRCNN-PS of the model's kind"):  # RGB weights for a luma net
        twin_of(narrow, untrained_model("fsrcnn-ps-56", 4).state_dict(), 4)
    with pytest.raises(ConfigError, match="is not an FSRCNN-PS"):
        twin_of(untrained_model("edsr-b6c32", 4), wide.state_dict(), 4)


def test_pruned_state_keeps_the_channels_that_are_large_on_pictures() -> None:
    """With measured activity the choice follows each channel's size on pictures, not its weights."""
    wide = FSRCNNPS(2, 8, n_map_layers=1)
    narrow = FSRCNNPS(2, 4, n_map_layers=1)
    quiet = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0])  # channels 1, 3, 5, 7 never fire
    state = pruned_state(wide.state_dict(), narrow.state_dict(), {"features": quiet, "expanded": 1 - quiet})
    torch.testing.assert_close(state["body.0.weight"], wide.state_dict()["body.0.weight"][0::2])
    torch.testing.assert_close(state["tail.weight"], wide.state_dict()["tail.weight"][:, 1::2])


def test_pruned_state_without_deepening_and_its_errors() -> None:
    wide = FSRCNNPS(3, 56, n_map_layers=4)
    narrow = FSRCNNPS(3, 36, n_map_layers=4)
    state = pruned_state(wide.state_dict(), narrow.state_dict())
    narrow.load_state_dict(state)  # shapes fit exactly
    assert torch.equal(state["body.4.weight"], wide.state_dict()["body.4.weight"])  # mapping untouched
    with pytest.raises(ConfigError, match="the model has 56 feature channels, more than the weights' 36"):
        pruned_state(narrow.state_dict(), wide.state_dict())  # widening is not pruning
    with pytest.raises(ConfigError, match="do not fit"):  # another scale's tail
        pruned_state(wide.state_dict(), FSRCNNPS(2, 36, n_map_layers=4).state_dict())
    edsr_state = EDSR(2, 8, 3).state_dict()  # 3x3 convs in "body.N.body.M" look like a mapping
    with pytest.raises(ConfigError, match="the weights are not an FSRCNN-PS"):
        pruned_state(edsr_state, narrow.state_dict())
    with pytest.raises(ConfigError, match="the model is not an FSRCNN-PS"):
        pruned_state(wide.state_dict(), edsr_state)
    with pytest.raises(ConfigError, match="the model is not an FSRCNN-PS"):  # a deconv FSRCNN has no tail conv
        pruned_state(wide.state_dict(), FSRCNN(3, 36).state_dict())
    with pytest.raises(ConfigError, match="wrap their FSRCNN-PS differently"):
        pruned_state(untrained_model("fsrcnn-ps-56-y", 3).state_dict(), narrow.state_dict())
    with pytest.raises(ConfigError, match="the model is not an FSRCNN$"):  # deepen: no KeyError on other nets
        deepened_state(wide.state_dict(), edsr_state)
    with pytest.raises(ConfigError, match="the weights are not an FSRCNN$"):
        deepened_state(edsr_state, wide.state_dict())
