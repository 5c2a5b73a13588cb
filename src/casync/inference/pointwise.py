"""The fusion's linear layers as 1x1 convolutions, for the fp32 CPU graph.

The cross-attention fusion applies its linear layers to (B, tokens, C) tensors. On x86 CPUs
PyTorch runs those as MKL matrix products, at about half the multiply-adds per second that
oneDNN reaches on the same arithmetic laid out as a 1x1 convolution over a (B, C, tokens, 1)
channels-last map (measured: experiments/2026-12-07_foldable_norm.md, "Where the fp32 time
goes"). A (B, tokens, C) tensor already has that memory layout, so the swap costs no copy: the
same weights, the same function, another kernel. The attention's query and output projections
go the same way (`PointwiseCrossAttention`); its softmax is PyTorch's fused attention.

Used by `build_generator` for fp32 only: at bf16 the matrix products are as fast as the
convolutions, and the int8 graph is onnxruntime's.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def as_conv(x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> the same memory viewed as a (B, C, N, 1) channels-last map."""
    b, n, c = x.shape
    return x.reshape(b, n, 1, c).permute(0, 3, 1, 2)


def from_conv(y: torch.Tensor) -> torch.Tensor:
    """(B, C, N, 1) channels-last -> (B, N, C)."""
    b, c, n, _ = y.shape
    return y.permute(0, 2, 3, 1).reshape(b, n, c)


def conv_of(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight[:, :, None, None])
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.to(memory_format=torch.channels_last)


class PointwiseLinear(nn.Module):
    """`nn.Linear` over (B, N, C) tokens, computed as a 1x1 convolution."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.conv = conv_of(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_conv(self.conv(as_conv(x)))


class PointwiseCrossAttention(nn.Module):
    """`nn.MultiheadAttention(batch_first=True)` for inference, its projections as 1x1
    convolutions. Returns (output, None): no attention weights."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        if not attention.batch_first or not attention._qkv_same_embed_dim:
            raise ValueError("PointwiseCrossAttention takes batch_first attention of one width")
        dim = attention.embed_dim
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        biases = bias.split(dim) if bias is not None else (None, None, None)
        self.heads = attention.num_heads
        self.query, self.key, self.value = (
            conv_of(w, b) for w, b in zip(weight.split(dim), biases, strict=True)
        )
        self.out = conv_of(attention.out_proj.weight, attention.out_proj.bias)

    def forward(self, query, key, value, need_weights: bool = False):
        if need_weights:
            raise ValueError("the inference graph keeps no attention weights: use the network")
        q, k, v = (
            self.split_heads(from_conv(proj(as_conv(x))))
            for proj, x in ((self.query, query), (self.key, key), (self.value, value))
        )
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, D)
        b, h, n, d = attended.shape
        merged = attended.transpose(1, 2).reshape(b, n, h * d)
        return from_conv(self.out(as_conv(merged))), None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)


def pointwise_linears(net: nn.Module) -> nn.Module:
    """An eval-mode copy of `net` with every `nn.Linear` and `nn.MultiheadAttention` swapped for
    its 1x1-convolution twin (`net` itself when it has none)."""
    kinds = (nn.Linear, nn.MultiheadAttention)
    if not any(isinstance(m, kinds) for m in net.modules()):
        return net
    net = copy.deepcopy(net).eval()
    swap(net)
    return net


def swap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.MultiheadAttention):
            setattr(module, name, PointwiseCrossAttention(child))
        elif isinstance(child, nn.Linear):
            setattr(module, name, PointwiseLinear(child))
        else:
            swap(child)
