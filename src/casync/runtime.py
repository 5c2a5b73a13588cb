"""The `device=` key every command takes (conf/runtime/default.yaml; profile's alike)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """`auto` -> "cuda" when a GPU is visible, else "cpu"; any other name is checked: a CUDA
    device without a visible GPU is a clear error, not a failure deep inside the first call."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device={name!r}: use auto, cpu, cuda or cuda:N ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA GPU is visible here: use device=cpu or auto")
    return name
