"""FaceEncoder: a lightweight UNet encoder of depthwise-separable convolutions.

Input is the 160x160 crop with the mouth region masked out, the mask itself, and optionally a
reference frame of the same speaker. It returns the bottleneck and one skip per resolution.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from casync.model.blocks import ConvNormAct, DepthwiseSeparableConv, ResidualDSBlock


class DownBlock(nn.Module):
    """Halve the resolution with a strided depthwise-separable conv, then refine."""

    def __init__(
        self, in_channels: int, out_channels: int, num_res_blocks: int, norm: str = "group"
    ) -> None:
        super().__init__()
        self.down = DepthwiseSeparableConv(in_channels, out_channels, stride=2, norm=norm)
        self.blocks = nn.Sequential(
            *[ResidualDSBlock(out_channels, norm) for _ in range(num_res_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


class FaceEncoder(nn.Module):
    """The stem folds each 2x2 pixel block into channels (space-to-depth, lossless) and works at
    half resolution: full-resolution layers with few channels are memory-bound and were the
    slowest part of the network on CPU, for a small share of its MACs."""

    def __init__(
        self, in_channels: int, channels: list[int], num_res_blocks: int, norm: str = "group"
    ) -> None:
        super().__init__()
        stem = ConvNormAct(4 * in_channels, channels[0], norm=norm)
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), stem)
        self.down_blocks = nn.ModuleList(
            DownBlock(c_in, c_out, num_res_blocks, norm)
            for c_in, c_out in itertools.pairwise(channels)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, in_channels, H, W) -> bottleneck (B, C_last, H/2^n, W/2^n) with n = len(channels),
        skips high-res first (the first at H/2: the stem's lossless space-to-depth of the crop)."""
        h = self.stem(x)
        skips = [h]
        for block in self.down_blocks:
            h = block(h)
            skips.append(h)
        return skips.pop(), skips
