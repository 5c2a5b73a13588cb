"""Decoder: UNet decoder with skip connections back to the encoder; RGB output in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from casync.model.blocks import ResidualConvBlock


class UpBlock(nn.Module):
    """Merge the upsampled input with the encoder skip through a 1x1 conv, then dense residual
    3x3 convolutions. The 1x1 conv of [upsample(x), skip] is computed as
    upsample(conv(x)) + conv(skip): the same function (bilinear upsampling is linear per
    channel), with the input's share done at low resolution and no wide high-res concat."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        num_res_blocks: int,
        norm: str = "group",
    ) -> None:
        super().__init__()
        self.merge_input = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.merge_skip = nn.Conv2d(skip_channels, out_channels, 1, bias=False)
        self.blocks = nn.Sequential(
            *[ResidualConvBlock(out_channels, out_channels, norm) for _ in range(num_res_blocks)]
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.merge_input(x), size=skip.shape[-2:], mode="bilinear")
        return self.blocks(x + self.merge_skip(skip))


class Decoder(nn.Module):
    def __init__(
        self,
        encoder_channels: list[int],
        channels: list[int],
        num_res_blocks: int,
        norm: str = "group",
    ) -> None:
        """encoder_channels: high-res first, as the FaceEncoder; channels: decoder widths,
        low-res first (one per skip)."""
        super().__init__()
        skips = encoder_channels[:-1][::-1]  # low-res first
        ins = [encoder_channels[-1], *channels[:-1]]
        self.up_blocks = nn.ModuleList(
            UpBlock(c_in, c_skip, c_out, num_res_blocks, norm)
            for c_in, c_skip, c_out in zip(ins, skips, channels, strict=True)
        )
        # Sub-pixel output: 3x(2x2) values per half-resolution position -> full-resolution RGB.
        self.to_rgb = nn.Sequential(
            nn.Conv2d(channels[-1], 3 * 4, 3, padding=1), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.up_blocks, reversed(skips), strict=True):
            x = block(x, skip)
        return torch.sigmoid(self.to_rgb(x))  # (B, 3, 2h, 2w): the crop's full resolution
