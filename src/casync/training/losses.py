"""Reconstruction losses: L1 + weight x perceptual (a frozen ImageNet network's features, see
`casync.training.perceptual`) + weight x lip detail (the image gradients inside the lip box)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casync.face.crop import mouth_box, mouth_box_mask
from casync.training.perceptual import build_perceptual_loss

PERCEPTUAL_REGIONS = ("crop", "mouth")


class ReconstructionLoss(nn.Module):
    """L1 + perceptual_weight x perceptual. `perceptual`: "vgg" (the paper's), "efficientnet_lite0",
    or "none", which drops the term explicitly. `mouth_weight` > 0 weights the L1 of the pixels in
    the crop's lip box (`casync.face.crop.mouth_box_mask`) 1 + mouth_weight times as much as the
    rest: the lips are a small part of the crop but all of what lip sync is judged on.

    `detail_weight` > 0 adds that much of the lip box's gradient difference: the L1 between the
    horizontal and vertical pixel differences of prediction and target inside the box (Mathieu
    et al. 2016's gradient difference loss). An L1 on pixels is content with the mean of the
    mouths an audio window allows, which is a blur; the gradients of a blur are near zero, so
    this term costs a soft mouth what its missing edges (lips, teeth) are worth. It costs a few
    tensor ops a step, not a network.

    `perceptual_region`: "crop" compares the whole crops' features; "mouth" compares only the lip
    box's, scaled up 2x so the features see the lips and teeth at about the scale they see a
    whole face at (the box is 17.5 % of the crop's pixels, 70 % once scaled: less of the
    perceptual network's work per step), and spends none of the term on the skin and jaw."""

    def __init__(
        self,
        perceptual: str,
        perceptual_weight: float,
        vgg_weights: str,
        mouth_weight: float = 0.0,
        detail_weight: float = 0.0,
        perceptual_region: str = "crop",
    ) -> None:
        super().__init__()
        if perceptual_region not in PERCEPTUAL_REGIONS:
            raise ValueError(
                f"loss.perceptual_region must be one of {PERCEPTUAL_REGIONS}, got "
                f"'{perceptual_region}'"
            )
        if mouth_weight < 0:
            raise ValueError(f"loss.mouth_weight must be >= 0, got {mouth_weight}")
        if detail_weight < 0:
            raise ValueError(f"loss.detail_weight must be >= 0, got {detail_weight}")
        self.perceptual_weight = perceptual_weight
        self.mouth_weight = mouth_weight
        self.detail_weight = detail_weight
        self.perceptual_region = perceptual_region
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
        loss = terms["l1"]
        if self.perceptual is not None:
            compared = (prediction, target)  # the lip-detail term below needs the whole crops
            if self.perceptual_region == "mouth":
                compared = (self.mouth(prediction), self.mouth(target))
            terms["perceptual"] = self.perceptual(*compared)
            loss = loss + self.perceptual_weight * terms["perceptual"]
        if self.detail_weight > 0:
            terms["detail"] = self.lip_detail(prediction, target)
            loss = loss + self.detail_weight * terms["detail"]
        terms["loss"] = loss
        return terms

    @staticmethod
    def mouth(images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops -> their lip boxes, scaled 2x (bilinear)."""
        rows, columns = mouth_box(images.shape[-1])
        box = images[..., rows, columns]
        return F.interpolate(box, scale_factor=2, mode="bilinear", align_corners=False)

    def lip_detail(self, prediction, target) -> torch.Tensor:
        """Mean |d prediction - d target| over the lip box, d the horizontal and vertical
        neighbour differences (both pixels of a pair inside the box)."""
        box = torch.from_numpy(mouth_box_mask(target.shape[-1])).to(target) > 0
        total, count = prediction.new_zeros(()), 0
        for dim in (-1, -2):
            inside = box.narrow(dim, 1, box.shape[dim] - 1) & box.narrow(dim, 0, box.shape[dim] - 1)
            gap = (prediction.diff(dim=dim) - target.diff(dim=dim)).abs()
            total = total + (gap * inside).sum()
            count += int(inside.sum()) * gap.shape[0] * gap.shape[1]
        return total / max(count, 1)
