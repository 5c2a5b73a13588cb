"""The fusion's linear layers as 1x1 convolutions, for the fp32 CPU graph.

The cross-attention fusion applies its linear layers to (B, tokens, C) tensors. On x86 CPUs
PyTorch runs those as MKL matrix products, at about half the multiply-adds per second that
oneDNN reaches on the same arithmetic laid out as a 1x1 convolution over a (B, C, tokens, 1)
channels-last map (measured: experiments/2026-12-07_foldable_norm.md, "Where the fp32 time
goes"). A contiguous (B, tokens, C) tensor already has that memory layout, so the swap costs no
copy: the same weights, the same function, another kernel. The attention's projections go the
same way (`PointwiseCrossAttention`); its softmax is PyTorch's fused attention.

Used by `build_generator` for fp32 only: at bf16 the matrix products are as fast as the
convolutions, and the int8 graph is onnxruntime's.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn


def as_conv(x: torch.Tensor) -> torch.Tensor:
    """(..., N, C) -> the same memory viewed as a (B, C, N, 1) channels-last map, B the product
    of the leading sizes (1 for a 2-D input)."""
    n, c = x.shape[-2:]
    return x.reshape(-1, n, 1, c).permute(0, 3, 1, 2)


def from_conv(y: torch.Tensor, lead: torch.Size) -> torch.Tensor:
    """(B, C, N, 1) channels-last -> (*lead, N, C)."""
    _, c, n, _ = y.shape
    return y.permute(0, 2, 3, 1).reshape(*lead, n, c)


def conv_of(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A 1x1 convolution computing `F.linear(x, weight, bias)` over channels."""
    out_features, in_features = weight.shape
    conv = nn.Conv2d(
        in_features, out_features, 1, bias=bias is not None, device=weight.device,
        dtype=weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(weight[:, :, None, None])
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.to(memory_format=torch.channels_last)


class PointwiseLinear(nn.Module):
    """`nn.Linear` over (..., N, C) tokens (at least 2-D), computed as a 1x1 convolution."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.conv = conv_of(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"PointwiseLinear takes (..., tokens, channels), got {x.shape}")
        return from_conv(self.conv(as_conv(x)), x.shape[:-2])


class PointwiseCrossAttention(nn.Module):
    """`nn.MultiheadAttention(batch_first=True)` in eval mode, its projections as 1x1
    convolutions: (B, N, E) queries, (B, W, E) keys and values. No masks; with
    `need_weights` the head-averaged attention weights come back, as the original returns them.
    Dropout is an identity at inference."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        unsupported = {
            "batch_first=False": not attention.batch_first,
            "kdim/vdim != embed_dim": attention.in_proj_weight is None,
            "add_bias_kv": attention.bias_k is not None,
            "add_zero_attn": attention.add_zero_attn,
        }
        if any(unsupported.values()):
            found = [name for name, present in unsupported.items() if present]
            raise ValueError(f"PointwiseCrossAttention does not reproduce {found}")
        dim = attention.embed_dim
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        biases = bias.split(dim) if bias is not None else (None, None, None)
        self.heads = attention.num_heads
        self.query, self.key, self.value = (
            conv_of(w, b) for w, b in zip(weight.split(dim), biases, strict=True)
        )
        self.out = conv_of(attention.out_proj.weight, attention.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ValueError("PointwiseCrossAttention takes no masks: the fusion uses none")
        q, k, v = (
            self.split_heads(from_conv(project(as_conv(x)), x.shape[:-2]))
            for project, x in ((self.query, query), (self.key, key), (self.value, value))
        )  # each (B, H, tokens, D)
        if need_weights:  # the explicit product, to keep the weights (notebooks, debugging)
            weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
            attended = weights @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            attended, weights = F.scaled_dot_product_attention(q, k, v), None
        b, h, n, d = attended.shape
        merged = attended.transpose(1, 2).reshape(b, n, h * d)
        return from_conv(self.out(as_conv(merged)), merged.shape[:-2]), weights

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)


MATRIX_LAYERS = (nn.Linear, nn.MultiheadAttention)


def pointwise_linears(net: nn.Module) -> nn.Module:
    """An eval-mode copy of `net` with every `nn.Linear` and `nn.MultiheadAttention` swapped for
    its 1x1-convolution twin (`net` itself when it has none). The copy shares every other
    parameter and buffer with `net` (no second copy of the weights in memory)."""
    if not any(isinstance(m, MATRIX_LAYERS) for m in net.modules()):
        return net
    shared = {id(t): t for t in itertools.chain(net.parameters(), net.buffers())}
    net = copy.deepcopy(net, memo=shared).eval()
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
