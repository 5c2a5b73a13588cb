"""Small convolutional building blocks shared by the face encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups: batch-size independent, so batch 1 inference matches training."""
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class ConvNormAct(nn.Sequential):
    """A dense 3x3 convolution, GroupNorm, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            group_norm(out_channels),
            nn.SiLU(inplace=True),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 (optionally strided) then pointwise 1x1: ~1/9 the MACs of a dense 3x3."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
            group_norm(in_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            group_norm(out_channels),
            nn.SiLU(inplace=True),
        )


class ResidualDSBlock(nn.Module):
    """Two depthwise-separable convolutions with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseSeparableConv(channels, channels), DepthwiseSeparableConv(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualConvBlock(nn.Module):
    """Two dense 3x3 convolutions with a (projected) shortcut: the decoder's workhorse."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(in_channels, out_channels), ConvNormAct(out_channels, out_channels)
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)
