"""The reconstruction loss's mouth weighting: where the lips are, and how much they count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from casync.data.cache import open_cache
from casync.face import LIP_INDICES, transform_points
from casync.face.crop import mouth_box_mask
from casync.training.losses import ReconstructionLoss


def test_the_lip_box_holds_the_real_lips_of_a_speaker_it_was_not_measured_on(s1_cache):
    source = open_cache(*s1_cache).sources[0]
    box = mouth_box_mask(160)
    inside = []
    for j in np.flatnonzero(np.asarray(source.face_found)):
        lips = transform_points(
            np.asarray(source.landmarks[j])[list(LIP_INDICES)], source.transforms[j]
        )
        x, y = np.clip(lips.round().astype(int), 0, 159).T
        inside.append(box[y, x].mean())
    assert np.mean(inside) > 0.97  # nearly every lip point of every frame
    assert 0.1 < box.mean() < 0.3  # and the box is a small part of the crop


def test_mouth_weight_makes_an_error_on_the_lips_cost_more_than_the_same_error_elsewhere():
    target = torch.zeros(1, 3, 160, 160)
    box = torch.from_numpy(mouth_box_mask(160)).bool()
    on_lips, elsewhere = target.clone(), target.clone()
    n = int(box.sum())
    on_lips[..., box] = 0.5
    flat = elsewhere.view(1, 3, -1)
    flat[..., np.flatnonzero(~box.numpy().ravel())[:n]] = 0.5  # as many pixels, off the lips
    plain = ReconstructionLoss("none", 0.1, "imagenet")
    weighted = ReconstructionLoss("none", 0.1, "imagenet", mouth_weight=4.0)
    assert plain(on_lips, target)["l1"] == pytest.approx(float(plain(elsewhere, target)["l1"]))
    ratio = weighted(on_lips, target)["l1"] / weighted(elsewhere, target)["l1"]
    assert float(ratio) == pytest.approx(5.0)
    uniform = torch.full_like(target, 0.25)  # the mean weight is 1: a uniform error keeps its L1
    assert float(weighted(uniform, target)["l1"]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="loss.mouth_weight"):
        ReconstructionLoss("none", 0.1, "imagenet", mouth_weight=-1)


def test_lip_detail_costs_a_blurred_mouth_and_not_a_shifted_brightness():
    """The gradient term sees what L1 forgives: a blur of the lips (edges gone) costs, the same
    lips a little brighter cost nothing; outside the lip box nothing counts."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 160, 160)
    blurred = torch.nn.functional.avg_pool2d(target, 5, stride=1, padding=2)
    box = torch.from_numpy(mouth_box_mask(160)).bool()
    loss = ReconstructionLoss("none", 0.1, "imagenet", detail_weight=1.0)
    assert float(loss.lip_detail(target, target)) == 0.0
    assert float(loss.lip_detail(target + 0.1, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss.lip_detail(blurred, target)) > 0.2
    off_lips = torch.where(box, target, blurred)  # blurred only outside the box
    assert float(loss.lip_detail(off_lips, target)) < 0.05 * float(loss.lip_detail(blurred, target))
    terms = loss(blurred, target)
    assert float(terms["loss"]) == pytest.approx(float(terms["l1"] + terms["detail"]))
    plain = ReconstructionLoss("none", 0.1, "imagenet")(blurred, target)
    assert "detail" not in plain and float(plain["loss"]) == pytest.approx(float(plain["l1"]))
    with pytest.raises(ValueError, match="loss.detail_weight"):
        ReconstructionLoss("none", 0.1, "imagenet", detail_weight=-0.5)


def test_a_mouth_region_perceptual_term_sees_the_lips_and_nothing_else():
    """loss.perceptual_region=mouth: a blur of the lips costs, a blur of everything else costs
    nothing; the whole-crop term charges both."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 160, 160)
    blurred = torch.nn.functional.avg_pool2d(target, 5, stride=1, padding=2)
    box = torch.from_numpy(mouth_box_mask(160)).bool()
    lips_blurred, rest_blurred = (
        torch.where(box, blurred, target),
        torch.where(box, target, blurred),
    )
    mouth = ReconstructionLoss("efficientnet_lite0", 0.1, "imagenet", perceptual_region="mouth")
    crop = ReconstructionLoss("efficientnet_lite0", 0.1, "imagenet")
    with torch.no_grad():
        assert float(mouth(rest_blurred, target)["perceptual"]) == 0.0
        assert float(mouth(lips_blurred, target)["perceptual"]) > 0.1
        assert float(crop(rest_blurred, target)["perceptual"]) > 0.1
    assert mouth.mouth(target).shape[-2:] == (2 * 56, 2 * 80)  # the 160 crop's lip box, 2x
    both = ReconstructionLoss(
        "efficientnet_lite0", 0.1, "imagenet", detail_weight=1.0, perceptual_region="mouth"
    )  # the lip-detail term still sees the whole crops
    with torch.no_grad():
        terms = both(lips_blurred, target)
    assert float(terms["detail"]) > 0 and float(terms["perceptual"]) > 0.1
    with pytest.raises(ValueError, match="loss.perceptual_region"):
        ReconstructionLoss("none", 0.1, "imagenet", perceptual_region="lips")
