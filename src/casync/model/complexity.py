"""Parameter and MAC counting. MACs = FlopCounterMode FLOPs / 2, the convention that reproduces
the paper's Wav2Lip row (36.30M params, 3.99 GMACs), whose table labels MACs as "GFLOPs"."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PARTS = ("face_encoder", "audio_encoder", "fusion", "decoder")


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, dict[str, int]]:
    """Total MACs of one forward pass and MACs per top-level child module."""
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        model(*inputs)
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    total = sum(per_module.get(root, {}).values()) // 2
    parts = {
        name: sum(per_module.get(f"{root}.{name}", {}).values()) // 2
        for name, _ in model.named_children()
    }
    return total, parts


def model_complexity(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict:
    """{"params_m", "gmacs", "parts": {name: {"params_m", "gmacs"}}} at the given inputs."""
    was_training = model.training
    model.eval()
    total_macs, part_macs = count_macs(model, inputs)
    model.train(was_training)
    parts = {
        name: {
            "params_m": count_params(child) / 1e6,
            "gmacs": part_macs.get(name, 0) / 1e9,
        }
        for name, child in model.named_children()
    }
    return {"params_m": count_params(model) / 1e6, "gmacs": total_macs / 1e9, "parts": parts}
