"""AudioEncoder head: a 7-layer 1-D CNN over a window of audio feature frames.

The frozen front end (HuBERT or log-mel, `casync.audio.frontend`) runs once per clip during
preprocessing or inference; this trainable head turns each frame's window into audio tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class AudioConvLayer(nn.Module):
    """Conv1d + GroupNorm + SiLU, residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(8 if out_channels % 8 == 0 else 1, out_channels)
        self.act = nn.SiLU(inplace=True)
        self.residual = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.conv(x)))
        return x + h if self.residual else h


class AudioEncoder(nn.Module):
    """(B, W, feature_dim) feature window -> (B, W, dim) audio tokens, one per feature frame.

    Layer 1 maps features to `channels`, the middle layers refine, the last maps to `dim`."""

    def __init__(
        self,
        feature_dim: int,
        channels: int,
        dim: int,
        num_layers: int = 7,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"audio_layers must be at least 2, got {num_layers}")
        self.input_norm = nn.LayerNorm(feature_dim)
        self.layers = nn.Sequential(
            AudioConvLayer(feature_dim, channels),
            *[AudioConvLayer(channels, channels) for _ in range(num_layers - 2)],
            AudioConvLayer(channels, dim),
        )

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        h = self.input_norm(window).transpose(1, 2)  # (B, feature_dim, W)
        return self.layers(h).transpose(1, 2)  # (B, W, dim)
