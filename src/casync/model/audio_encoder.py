"""AudioEncoder head: a 7-layer 1-D CNN over a window of audio feature frames.

The frozen front end (HuBERT or log-mel, `casync.audio.frontend`) runs once per clip during
preprocessing or inference; this trainable head turns each frame's window into audio tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from casync.model.blocks import norm_layer


def conv1d_as_matmul(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """`conv(x)` for a stride-1, 'same'-padded Conv1d, as one matrix product over the stacked
    taps. The same function and weights; on short windows (10 frames) PyTorch's CPU Conv1d takes a
    slow im2col path at batch 1 (~1.4 ms a layer here), the matrix product a fraction of that."""
    k = conv.kernel_size[0]
    w = x.shape[-1]
    padded = F.pad(x, (k // 2, k // 2))  # (B, C_in, W + k - 1)
    taps = torch.stack([padded[..., i : i + w] for i in range(k)], dim=-1)  # (B, C_in, W, k)
    taps = taps.transpose(1, 2).flatten(2)  # (B, W, C_in * k), the weight's (C_in, k) order
    return F.linear(taps, conv.weight.flatten(1), conv.bias).transpose(1, 2)  # (B, C_out, W)


class AudioConvLayer(nn.Module):
    """Conv1d + its norm + SiLU, residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "group") -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = norm_layer(norm, out_channels, dims=1)
        self.act = nn.SiLU(inplace=True)
        self.residual = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(conv1d_as_matmul(x, self.conv)))
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
        norm: str = "group",
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"audio_layers must be at least 2, got {num_layers}")
        self.input_norm = nn.LayerNorm(feature_dim)
        self.layers = nn.Sequential(
            AudioConvLayer(feature_dim, channels, norm),
            *[AudioConvLayer(channels, channels, norm) for _ in range(num_layers - 2)],
            AudioConvLayer(channels, dim, norm),
        )

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        h = self.input_norm(window).transpose(1, 2)  # (B, feature_dim, W)
        return self.layers(h).transpose(1, 2)  # (B, W, dim)
