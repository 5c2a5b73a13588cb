"""Reconstruction losses: L1 + weight x VGG perceptual (ImageNet-normalised VGG16 features)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

VGG_LAYERS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's vgg16.features


class MissingVGGWeightsError(RuntimeError):
    pass


def load_vgg16_features(weights: str) -> nn.Sequential:
    """`weights`: "imagenet" (torchvision download/cache) or a path to a vgg16 state_dict."""
    from torchvision.models import VGG16_Weights, vgg16

    if weights == "imagenet":
        try:
            model = vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
        except Exception as error:
            raise MissingVGGWeightsError(
                "VGG16 ImageNet weights are not in the torch hub cache and could not be "
                "downloaded. Set loss.vgg_weights=/path/to/vgg16.pth (a torchvision vgg16 "
                "state_dict), or train without the perceptual term: loss.perceptual=none. "
                f"({type(error).__name__}: {error})"
            ) from error
    else:
        path = Path(weights)
        if not path.is_file():
            raise MissingVGGWeightsError(
                f"loss.vgg_weights='{weights}' is not a file: point it at a torchvision vgg16 "
                "state_dict, use 'imagenet', or set loss.perceptual=none"
            )
        model = vgg16(weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.features[: VGG_LAYERS[-1] + 1]


class VGGPerceptualLoss(nn.Module):
    """Mean L1 distance between VGG16 activations at four depths (frozen network)."""

    def __init__(self, weights: str = "imagenet") -> None:
        super().__init__()
        self.features = load_vgg16_features(weights).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        super().train(mode)
        self.features.eval()  # always frozen
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([prediction, target]) - self.mean) / self.std
        loss = prediction.new_zeros(())
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_LAYERS:
                pred, tgt = x.chunk(2)
                loss = loss + F.l1_loss(pred, tgt)
        return loss / len(VGG_LAYERS)


class ReconstructionLoss(nn.Module):
    """L1 + perceptual_weight x VGG. `perceptual="none"` drops the VGG term explicitly."""

    def __init__(self, perceptual: str, perceptual_weight: float, vgg_weights: str) -> None:
        super().__init__()
        if perceptual not in ("vgg", "none"):
            raise ValueError(f"loss.perceptual must be 'vgg' or 'none', got '{perceptual}'")
        self.perceptual_weight = perceptual_weight
        self.vgg = VGGPerceptualLoss(vgg_weights) if perceptual == "vgg" else None

    def forward(self, prediction, target) -> dict[str, torch.Tensor]:
        terms = {"l1": F.l1_loss(prediction, target)}
        if self.vgg is not None:
            terms["perceptual"] = self.vgg(prediction, target)
        terms["loss"] = terms["l1"] + self.perceptual_weight * terms.get(
            "perceptual", torch.zeros_like(terms["l1"])
        )
        return terms
