"""CASyncNet: FaceEncoder + AudioEncoder + cross-attention Fusion + UNet Decoder.

Typed constructor arguments are the model's config schema (`conf/model/*.yaml`).
"""

from __future__ import annotations

import torch
from torch import nn

from casync.model.audio_encoder import AudioEncoder
from casync.model.blocks import NORMS
from casync.model.decoder import Decoder
from casync.model.face_encoder import FaceEncoder
from casync.model.fusion import Fusion


def scale_width(channels: int, multiplier: float, divisor: int = 8) -> int:
    """Scale a channel count, keeping it a multiple of `divisor` (GroupNorm and heads need it)."""
    return max(divisor, int(round(channels * multiplier / divisor)) * divisor)


class CASyncNet(nn.Module):
    def __init__(
        self,
        image_size: int = 160,
        use_reference: bool = True,
        encoder_channels: tuple[int, ...] = (64, 128, 256, 512),
        encoder_res_blocks: int = 1,
        decoder_channels: tuple[int, ...] = (256, 224, 72),
        decoder_res_blocks: int = 1,
        audio_feature_dim: int = 1024,
        audio_window: int = 10,
        audio_layers: int = 7,
        audio_channels: int = 480,
        fusion_dim: int = 448,
        fusion_heads: int = 8,
        fusion_depth: int = 4,
        width_multiplier: float = 1.0,
        norm: str = "group",
    ) -> None:
        """`norm`: "group" (GroupNorm, the default) or "batch" (BatchNorm: folded into the
        convolutions for inference, `casync.model.fold`)."""
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"model.norm={norm!r}: one of {', '.join(NORMS)}")
        if len(decoder_channels) != len(encoder_channels) - 1:
            raise ValueError(
                f"decoder_channels needs one entry per skip: {len(encoder_channels) - 1} for "
                f"encoder_channels={list(encoder_channels)}, got {list(decoder_channels)}"
            )
        enc = [scale_width(c, width_multiplier) for c in encoder_channels]
        dec = [scale_width(c, width_multiplier) for c in decoder_channels]
        fusion_width = scale_width(fusion_dim, width_multiplier, divisor=fusion_heads)
        bottleneck = image_size // 2 ** len(enc)  # the stem halves, then each down block

        self.image_size = image_size
        self.use_reference = use_reference
        self.audio_feature_dim = audio_feature_dim
        self.audio_window = audio_window
        in_channels = 3 + 1 + (3 if use_reference else 0)  # masked crop, mask, reference

        self.norm = norm
        self.face_encoder = FaceEncoder(in_channels, enc, encoder_res_blocks, norm)
        self.audio_encoder = AudioEncoder(
            audio_feature_dim,
            scale_width(audio_channels, width_multiplier),
            fusion_width,
            audio_layers,
            norm,
        )
        self.fusion = Fusion(enc[-1], fusion_width, fusion_heads, fusion_depth, bottleneck**2)
        self.decoder = Decoder(enc, dec, decoder_res_blocks, norm)

    def encode_face(
        self, masked: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The audio-independent half: masked (B,3,H,W) and reference (B,3,H,W) in [0,1], mask
        (B,1,H,W) -> (bottleneck, skips high-res first), as `FaceEncoder` returns them. A looping
        source shows the same frame again and again: its features can be kept and reused."""
        inputs = [masked, mask]
        if self.use_reference:
            if reference is None:
                raise ValueError("this model was built with use_reference=True: pass reference")
            inputs.append(reference)
        return self.face_encoder(torch.cat(inputs, dim=1))

    def decode(
        self, bottleneck: torch.Tensor, skips: list[torch.Tensor], audio: torch.Tensor
    ) -> torch.Tensor:
        """The audio half: `encode_face`'s features + audio (B, window, feature_dim) -> the
        generated crop (B,3,H,W) in [0,1]."""
        audio_tokens = self.audio_encoder(audio)  # (B, W, fusion_dim)
        fused = self.fusion(bottleneck, audio_tokens)
        return self.decoder(fused, skips)

    def forward(
        self,
        masked: torch.Tensor,
        mask: torch.Tensor,
        audio: torch.Tensor,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """masked (B,3,H,W) and reference (B,3,H,W) in [0,1]; mask (B,1,H,W), 1 = regenerate;
        audio (B, window, feature_dim). Returns the generated crop (B,3,H,W) in [0,1]."""
        return self.decode(*self.encode_face(masked, mask, reference), audio)

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (profiling, export, tests)."""
        size = self.image_size
        inputs = [
            torch.rand(batch_size, 3, size, size),
            torch.ones(batch_size, 1, size, size),
            torch.randn(batch_size, self.audio_window, self.audio_feature_dim),
        ]
        if self.use_reference:
            inputs.append(torch.rand(batch_size, 3, size, size))
        return tuple(inputs)
