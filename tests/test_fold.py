"""model.norm=batch: BatchNorm folds into the convolutions for inference, the folded network
computes what the unfolded one does, GroupNorm networks (every checkpoint so far) are left as
they are, and the paper size keeps its parameter count."""

from __future__ import annotations

import pytest
import torch
from conftest import network_inputs
from torch import nn

from casync.inference.precision import build_generator
from casync.model import CASyncNet
from casync.model.fold import folded, has_batch_norm

TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}


def trained_batch_norm_net() -> CASyncNet:
    """A BatchNorm network whose running statistics and affine weights are not the identity."""
    torch.manual_seed(0)
    net = CASyncNet(**TINY, norm="batch").train()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for _ in range(3):  # running statistics from data
            net(*network_inputs(4))
    return net.eval()


def test_the_folded_network_computes_the_same_crops_without_batch_norm():
    net = trained_batch_norm_net()
    assert has_batch_norm(net)
    with torch.no_grad():
        expected = net(*network_inputs(3))
        fold = folded(net)
        got = fold(*network_inputs(3))
    assert not has_batch_norm(fold) and has_batch_norm(net)  # a copy: the original keeps its own
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    generator = build_generator(net, "fp32", "cpu")  # what inference runs: folded
    assert not has_batch_norm(generator)
    with torch.no_grad():
        assert torch.allclose(generator(*network_inputs(3)), expected, atol=1e-5)


def test_group_norm_networks_are_left_as_they_are_and_the_paper_size_holds():
    net = CASyncNet(**TINY)
    assert folded(net) is net
    assert net.norm == "group" and CASyncNet(**TINY, norm="batch").norm == "batch"
    paper = sum(p.numel() for p in CASyncNet().parameters())
    assert paper == sum(p.numel() for p in CASyncNet(norm="batch").parameters()) == 19_777_164
    with pytest.raises(ValueError, match="model.norm='layer': one of group, batch"):
        CASyncNet(**TINY, norm="layer")


def test_a_transposed_convolution_folds_too():
    """Wav2Lip's up-sampling blocks (ConvTranspose2d + BatchNorm): the bench runs both networks
    through the same `build_generator`, so both are folded."""
    from benchmarks.wav2lip import Wav2LipGenerator

    torch.manual_seed(0)
    net = Wav2LipGenerator().train()
    example = net.example_inputs(2)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net(*example)  # running statistics from data
    net.eval()
    fold = folded(net)
    assert not has_batch_norm(fold) and has_batch_norm(net)
    with torch.no_grad():
        torch.testing.assert_close(fold(*example), net(*example), atol=1e-4, rtol=1e-4)
