"""The fp32 graph's linear layers as 1x1 convolutions (`casync.inference.pointwise`): the same
crops as the network, no matrix-product layer left, the network itself untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from casync.inference.pointwise import pointwise_linears
from casync.inference.precision import build_generator
from casync.model import CASyncNet

TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}


def inputs(batch: int):
    torch.manual_seed(1)
    return (
        torch.rand(batch, 3, 160, 160),
        torch.ones(batch, 1, 160, 160),
        torch.randn(batch, 10, 80),
        torch.rand(batch, 3, 160, 160),
    )


def matrix_layers(net: nn.Module) -> int:
    return sum(isinstance(m, nn.Linear | nn.MultiheadAttention) for m in net.modules())


@pytest.mark.parametrize("batch", [1, 3])
def test_the_pointwise_network_computes_the_same_crops(batch):
    torch.manual_seed(0)
    net = CASyncNet(**TINY).eval()
    with torch.no_grad():
        for p in net.fusion.parameters():  # biases and weights away from their init
            p.add_(0.05 * torch.randn_like(p))
        expected = net(*inputs(batch))
        swapped = pointwise_linears(net)
        got = swapped(*inputs(batch))
    assert matrix_layers(net) > 0 and matrix_layers(swapped) == 0
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        attention = swapped.fusion.blocks[0].attn
        q = torch.randn(1, 100, net.fusion.blocks[0].norm_q.normalized_shape[0])
        with pytest.raises(ValueError, match="no attention weights"):
            attention(q, q, q, need_weights=True)


def test_the_fp32_generator_runs_the_pointwise_graph_and_bf16_keeps_its_matrix_products():
    net = CASyncNet(**TINY).eval()
    fp32 = build_generator(net, "fp32", "cpu")
    assert matrix_layers(fp32) == 0 and matrix_layers(net) > 0
    with torch.no_grad():
        torch.testing.assert_close(fp32(*inputs(2)), net(*inputs(2)), atol=2e-5, rtol=1e-4)
    assert matrix_layers(build_generator(net, "bf16", "cpu").net) > 0
