"""The Wav2Lip generator (Prajwal et al., ACM MM 2020), re-implemented from the paper's
architecture description as a speed baseline. Random weights: only its cost matters here.

Face encoder: 6-channel 96x96 input (masked target + reference), strided 3x3 conv blocks down to a
1x1x512 embedding, keeping every stage's output as a skip. Audio encoder: a 1x80x16 mel window
through strided 2-D convs to a 1x1x512 embedding. Decoder: transposed convs from the audio
embedding back to 96x96, concatenating the face skips, then a sigmoid RGB head. Every block is
conv + BatchNorm + ReLU, with an identity shortcut where shapes allow.

At batch 1: 36.30M parameters, 3.99 GMACs (FlopCounterMode FLOPs / 2), the paper's figures.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU; `residual` adds the input before the activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride=1, padding=0, residual=False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.norm = nn.BatchNorm2d(c_out)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        return torch.relu(out + x if self.residual else out)


class ConvTransposeBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, out_pad=0):
        super().__init__(
            nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, out_pad),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


def down_stage(c_in: int, c_out: int, n_res: int, stride=2, kernel=3, padding=1) -> nn.Sequential:
    """A (strided) conv then `n_res` residual 3x3 convs at the new width."""
    return nn.Sequential(
        ConvBlock(c_in, c_out, kernel, stride, padding),
        *[ConvBlock(c_out, c_out, 3, 1, 1, residual=True) for _ in range(n_res)],
    )


def up_stage(c_in: int, c_out: int, n_res: int, first_stage: bool = False) -> nn.Sequential:
    """A x2 transposed conv (3x3 -> 1x1 for the first) then `n_res` residual 3x3 convs."""
    up = (
        ConvTransposeBlock(c_in, c_out, 3, 1, 0)
        if first_stage
        else ConvTransposeBlock(c_in, c_out, 3, 2, 1, out_pad=1)
    )
    return nn.Sequential(
        up, *[ConvBlock(c_out, c_out, 3, 1, 1, residual=True) for _ in range(n_res)]
    )


class Wav2LipGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96
                down_stage(16, 32, 2),  # 48
                down_stage(32, 64, 3),  # 24
                down_stage(64, 128, 2),  # 12
                down_stage(128, 256, 2),  # 6
                down_stage(256, 512, 1),  # 3
                nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1
            ]
        )
        self.audio_encoder = nn.Sequential(
            down_stage(1, 32, 2, stride=1),  # 80x16
            down_stage(32, 64, 2, stride=(3, 1)),  # 27x16
            down_stage(64, 128, 2, stride=3),  # 9x6
            down_stage(128, 256, 1, stride=(3, 2)),  # 3x3
            ConvBlock(256, 512, 3, 1, 0),  # 1x1
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1
                up_stage(1024, 512, 1, first_stage=True),  # 3
                up_stage(1024, 512, 2),  # 6
                up_stage(768, 384, 2),  # 12
                up_stage(512, 256, 2),  # 24
                up_stage(320, 128, 2),  # 48
                up_stage(160, 64, 2),  # 96
            ]
        )
        self.output_block = nn.Sequential(
            ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1), nn.Sigmoid()
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, 80, 16), faces (B, 6, 96, 96) -> (B, 3, 96, 96) in [0, 1]."""
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        skips = []
        h = faces
        for block in self.face_encoder_blocks:
            h = block(h)
            skips.append(h)
        for block in self.face_decoder_blocks:
            x = torch.cat([block(x), skips.pop()], dim=1)  # decoder output + matching skip
        return self.output_block(x)

    @staticmethod
    def example_inputs(batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(batch_size, 1, 80, 16), torch.rand(batch_size, 6, 96, 96)
