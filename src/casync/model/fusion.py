"""Fusion: an MLP that lifts visual tokens into the fusion width, then cross-attention blocks in
which visual tokens (queries) attend to audio tokens (keys and values)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Sequential):
    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__(
            nn.Linear(in_features, hidden_features),
            nn.GELU(),
            nn.Linear(hidden_features, out_features),
        )


class CrossAttentionBlock(nn.Module):
    """Pre-norm: x + CrossAttn(LN(x), audio); x + MLP(LN(x)). Keeps the attention weights of the
    last call in `last_attention` when `keep_attention` is set (for notebooks and debugging)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dim)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """visual: (B, N, dim), audio: (B, W, dim) -> (B, N, dim)."""
        kv = self.norm_kv(audio)
        attended, weights = self.attn(self.norm_q(visual), kv, kv, need_weights=self.keep_attention)
        self.last_attention = weights  # (B, N, W) averaged over heads, or None
        visual = visual + attended
        return visual + self.mlp(self.norm_mlp(visual))


class Fusion(nn.Module):
    def __init__(
        self, visual_channels: int, dim: int, num_heads: int, depth: int, num_tokens: int
    ) -> None:
        super().__init__()
        self.visual_in = MLP(visual_channels, dim * 2, dim)
        self.position = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, num_heads) for _ in range(depth))
        self.visual_out = nn.Linear(dim, visual_channels)

    def forward(self, feature_map: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """feature_map: (B, C, h, w), audio_tokens: (B, W, dim) -> (B, C, h, w)."""
        b, c, h, w = feature_map.shape
        tokens = feature_map.flatten(2).transpose(1, 2)  # (B, h*w, C)
        x = self.visual_in(tokens) + self.position
        for block in self.blocks:
            x = block(x, audio_tokens)
        fused = tokens + self.visual_out(x)  # residual keeps the visual identity path
        return fused.transpose(1, 2).reshape(b, c, h, w)
