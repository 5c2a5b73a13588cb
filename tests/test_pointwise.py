"""The fp32 graph's linear layers as 1x1 convolutions (`casync.inference.pointwise`): the same
crops and attention weights as the network, no matrix-product layer left, the network itself
untouched and its other weights shared, not copied."""

from __future__ import annotations

import pytest
import torch
from conftest import network_inputs
from torch import nn

import casync.inference.precision as precision_module
from casync.inference.pointwise import PointwiseCrossAttention, pointwise_linears
from casync.inference.precision import build_generator
from casync.model import CASyncNet

TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}


def matrix_layers(net: nn.Module) -> int:
    return sum(isinstance(m, nn.Linear | nn.MultiheadAttention) for m in net.modules())


def trained_net() -> CASyncNet:
    torch.manual_seed(0)
    net = CASyncNet(**TINY).eval()
    with torch.no_grad():
        for p in net.fusion.parameters():  # biases and weights away from their init
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("batch", [1, 3])
def test_the_pointwise_network_computes_the_same_crops_and_attention(batch):
    net = trained_net()
    with torch.no_grad():
        expected = net(*network_inputs(batch))
        swapped = pointwise_linears(net)
        got = swapped(*network_inputs(batch))
    assert matrix_layers(net) > 0 and matrix_layers(swapped) == 0
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(
            net(*network_inputs(batch)), expected, rtol=0, atol=0
        )  # untouched
    for model in (net, swapped):  # the notebooks' attention weights, through either graph
        for block in model.fusion.blocks:
            block.keep_attention = True
        with torch.no_grad():
            model(*network_inputs(batch))
    for ours, theirs in zip(swapped.fusion.blocks, net.fusion.blocks, strict=True):
        torch.testing.assert_close(ours.last_attention, theirs.last_attention, atol=1e-5, rtol=0)


def test_the_copy_shares_the_weights_it_does_not_swap():
    net = trained_net()
    swapped = pointwise_linears(net)
    ours = dict(swapped.face_encoder.named_parameters())
    for name, weight in net.face_encoder.named_parameters():
        assert ours[name] is weight  # one tensor in memory, not two
    assert pointwise_linears(swapped) is swapped  # nothing left to swap


def test_attention_it_cannot_reproduce_is_refused():
    with pytest.raises(ValueError, match="add_bias_kv"):
        PointwiseCrossAttention(nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True))
    with pytest.raises(ValueError, match="batch_first=False"):
        PointwiseCrossAttention(nn.MultiheadAttention(8, 2))
    attention = PointwiseCrossAttention(nn.MultiheadAttention(8, 2, batch_first=True))
    x = torch.rand(1, 4, 8)
    with pytest.raises(ValueError, match="no masks"):
        attention(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.bool))


def test_the_fp32_generator_runs_the_pointwise_graph_and_bf16_keeps_its_matrix_products(
    monkeypatch,
):
    net = trained_net()
    fp32 = build_generator(net, "fp32", "cpu")
    assert matrix_layers(fp32) == 0 and matrix_layers(net) > 0
    with torch.no_grad():
        torch.testing.assert_close(
            fp32(*network_inputs(2)), net(*network_inputs(2)), atol=2e-5, rtol=1e-4
        )
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(["avx512_bf16"]))
    assert matrix_layers(build_generator(net, "bf16", "cpu").net) > 0
