"""Reconstruction losses: L1 + weight x perceptual (a frozen ImageNet network's features, see
`casync.training.perceptual`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from casync.training.perceptual import build_perceptual_loss


class ReconstructionLoss(nn.Module):
    """L1 + perceptual_weight x perceptual. `perceptual`: "vgg" (the paper's), "efficientnet_lite0",
    or "none", which drops the term explicitly."""

    def __init__(self, perceptual: str, perceptual_weight: float, vgg_weights: str) -> None:
        super().__init__()
        self.perceptual_weight = perceptual_weight
        self.perceptual = (
            None if perceptual == "none" else build_perceptual_loss(perceptual, vgg_weights)
        )

    def forward(self, prediction, target) -> dict[str, torch.Tensor]:
        terms = {"l1": F.l1_loss(prediction, target)}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(prediction, target)
        terms["loss"] = terms["l1"] + self.perceptual_weight * terms.get(
            "perceptual", torch.zeros_like(terms["l1"])
        )
        return terms
