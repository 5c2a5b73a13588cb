"""Checkpoints: what inference needs from a training run, loaded safely (`weights_only=True`).

A CASync checkpoint is a Lightning `.ckpt` whose `hyper_parameters` hold the network config
(`model`) and the audio front-end config (`audio`), and whose `casync` entry holds the fixed
reference crop and the frame rate. EMA weights (`ema_net.*`) win over raw weights (`net.*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from casync.atomic import atomic_path
from casync.model import CASyncNet

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible with this CASync."""


@dataclass
class LoadedGenerator:
    net: CASyncNet
    model_config: dict
    audio_config: dict
    reference: np.ndarray | None  # (160, 160, 3) uint8 crop, or None
    fps: float
    crop_size: int


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """Never a half-written checkpoint: write beside `path`, then rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def casync_extras(reference: np.ndarray | None, fps: float, crop_size: int) -> dict:
    """The `casync` entry of a checkpoint (plain tensors and numbers: weights_only-safe)."""
    ref = None if reference is None else torch.from_numpy(np.ascontiguousarray(reference))
    return {"format": FORMAT_VERSION, "reference": ref, "fps": float(fps), "crop_size": crop_size}


def save_generator_checkpoint(
    path: str | Path,
    net: CASyncNet,
    model_config: dict,
    audio_config: dict,
    reference: np.ndarray | None = None,
    fps: float = 25.0,
) -> None:
    """A minimal checkpoint that `load_generator` reads (tests, exports, hand-made models)."""
    checkpoint = {
        "hyper_parameters": {"model": dict(model_config), "audio": dict(audio_config)},
        "state_dict": {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()},
        "casync": casync_extras(reference, fps, net.image_size),
    }
    atomic_torch_save(checkpoint, path)


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist: pass checkpoint=PATH to a .ckpt written by "
            "`python -m casync.train` (see the run folder's checkpoints/)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all land here
        raise CheckpointError(
            f"checkpoint '{path}' could not be read safely ({type(error).__name__}: {error}). "
            "Is it a CASync .ckpt? Only weights_only-loadable checkpoints are accepted."
        ) from error


def load_generator(path: str | Path, map_location: str = "cpu") -> LoadedGenerator:
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint.get("hyper_parameters", {})
    if "model" not in hparams or "audio" not in hparams:
        raise CheckpointError(
            f"checkpoint '{path}' has no CASync model/audio config in its hyper_parameters: "
            "it was not written by casync.train"
        )
    model_config = {k: v for k, v in hparams["model"].items() if k != "_target_"}
    try:
        net = CASyncNet(**model_config)
    except TypeError as error:
        raise CheckpointError(
            f"checkpoint '{path}' describes a network this CASync cannot build: {error}"
        ) from error
    state = checkpoint["state_dict"]
    prefix = "ema_net." if any(k.startswith("ema_net.") for k in state) else "net."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{path}' does not match its own architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    extras = checkpoint.get("casync", {})
    reference = extras.get("reference")
    return LoadedGenerator(
        net=net.eval(),
        model_config=model_config,
        audio_config=dict(hparams["audio"]),
        reference=None if reference is None else reference.numpy(),
        fps=float(extras.get("fps", 25.0)),
        crop_size=int(extras.get("crop_size", net.image_size)),
    )
