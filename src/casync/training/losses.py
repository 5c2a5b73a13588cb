"""Reconstruction losses: L1 + weight x perceptual (a frozen ImageNet network's features, see
`casync.training.perceptual`)."""

from __future__ import annotations

import torch
from torch import nn

from casync.face.crop import mouth_box_mask
from casync.training.perceptual import build_perceptual_loss


class ReconstructionLoss(nn.Module):
    """L1 + perceptual_weight x perceptual. `perceptual`: "vgg" (the paper's), "efficientnet_lite0",
    or "none", which drops the term explicitly. `mouth_weight` > 0 weights the L1 of the pixels in
    the crop's lip box (`casync.face.crop.mouth_box_mask`) 1 + mouth_weight times as much as the
    rest: the lips are a small part of the crop but all of what lip sync is judged on."""

    def __init__(
        self, perceptual: str, perceptual_weight: float, vgg_weights: str, mouth_weight: float = 0.0
    ) -> None:
        super().__init__()
        if mouth_weight < 0:
            raise ValueError(f"loss.mouth_weight must be >= 0, got {mouth_weight}")
        self.perceptual_weight = perceptual_weight
        self.mouth_weight = mouth_weight
        self.perceptual = (
            None if perceptual == "none" else build_perceptual_loss(perceptual, vgg_weights)
        )

    def pixel_weights(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """(1, 1, size, size) weights with mean 1 (so the L1 keeps its scale)."""
        weights = 1 + self.mouth_weight * torch.from_numpy(mouth_box_mask(size))
        return (weights / weights.mean()).to(like)[None, None]

    def forward(self, prediction, target) -> dict[str, torch.Tensor]:
        error = (prediction - target).abs()
        if self.mouth_weight > 0:
            error = error * self.pixel_weights(target.shape[-1], error)
        terms = {"l1": error.mean()}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(prediction, target)
        terms["loss"] = terms["l1"] + self.perceptual_weight * terms.get(
            "perceptual", torch.zeros_like(terms["l1"])
        )
        return terms
