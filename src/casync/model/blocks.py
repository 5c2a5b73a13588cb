"""Small convolutional building blocks shared by the face encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("group", "batch")  # model.norm: GroupNorm, or BatchNorm (folds into the convolution)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups: batch-size independent, so batch 1 inference matches training."""
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


def norm_layer(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """`norm` ("group" | "batch") over `channels` of a `dims`-D convolution's output. BatchNorm
    at inference is a per-channel affine map that `casync.model.fold` merges into the
    convolution before it; GroupNorm depends on each sample's data and cannot be merged."""
    if norm == "group":
        return group_norm(channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    raise ValueError(f"model.norm={norm!r}: one of {', '.join(NORMS)}")


class ConvNormAct(nn.Sequential):
    """A dense 3x3 convolution, its norm, SiLU."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "group"
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            norm_layer(norm, out_channels),
            nn.SiLU(inplace=True),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 (optionally strided) then pointwise 1x1: ~1/9 the MACs of a dense 3x3."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "group"
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
            norm_layer(norm, in_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            norm_layer(norm, out_channels),
            nn.SiLU(inplace=True),
        )


class ResidualDSBlock(nn.Module):
    """Two depthwise-separable convolutions with an identity shortcut."""

    def __init__(self, channels: int, norm: str = "group") -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseSeparableConv(channels, channels, norm=norm),
            DepthwiseSeparableConv(channels, channels, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualConvBlock(nn.Module):
    """Two dense 3x3 convolutions with a (projected) shortcut: the decoder's workhorse."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "group") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(in_channels, out_channels, norm=norm),
            ConvNormAct(out_channels, out_channels, norm=norm),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)
