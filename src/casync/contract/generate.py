"""The one way to turn uint8 crops + audio windows + reference crops into generated crops, for
evaluation and inference alike (training feeds `network_inputs`' float form from its batches).

uint8 (N, S, S, 3) crops -> float32 (N, 3, S, S) in [0, 1]; the mask (1 = the region to
regenerate, fixed in crop coordinates) blanks that region (`masked = crop * (1 - mask)`); the
network (a `CASyncNet` or an `inference.precision` generator: its halves `encode_face` and
`decode`, which `encode`/`decode` expose) fills it; its output is clamped to [0, 1] and rounded
back to uint8.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Network = Callable[..., torch.Tensor]  # (masked, mask, audio, reference) -> (N, 3, S, S)
# ... with .encode_face(masked, mask, reference) and .decode(bottleneck, skips, audio)


def to_float(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [0, 1] on `device`."""
    tensor = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2)
    return tensor.float() / 255.0


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) float in [0, 1] -> (N, S, S, 3) uint8 (clamped, rounded)."""
    return (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def network_inputs(crops: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) crops and a (1 or N, 1, S, S) mask -> (masked crops, the mask for each)."""
    mask = mask.expand(len(crops), -1, -1, -1)
    return crops * (1 - mask), mask


class CropGenerator:
    """uint8 crops + their audio windows + reference crops -> uint8 generated crops."""

    def __init__(self, net: Network, device: str | torch.device = "cpu") -> None:
        """`net`: a module (run in eval mode on `device`, channels-last: oneDNN's fast layout,
        and the one every caller gets, so evaluation scores the pixels inference makes) or a
        callable already on `device` (`inference.precision`'s bf16 and int8 generators)."""
        self.device = torch.device(device)
        if isinstance(net, torch.nn.Module):
            net = net.eval().to(self.device, memory_format=torch.channels_last)
        self.net = net

    @torch.inference_mode()
    def __call__(
        self, crops: np.ndarray, masks: np.ndarray, windows: np.ndarray, references: np.ndarray
    ) -> np.ndarray:
        """crops (N, S, S, 3) uint8, masks (S, S) or (N, S, S) (1 = regenerate), windows
        (N, W, D), references (1 or N, S, S, 3) uint8 -> (N, S, S, 3) uint8, the whole crop as
        the network made it."""
        if len(crops) == 0:
            return np.zeros((0, *np.shape(crops)[1:]), np.uint8)
        return self.decode(self.encode(crops, masks, references), windows)

    @torch.inference_mode()
    def encode(
        self, crops: np.ndarray, masks: np.ndarray, references: np.ndarray
    ) -> list[torch.Tensor]:
        """The audio-independent half of `__call__` (same inputs, no windows): the network's
        face features [bottleneck, *skips], each (N, C, h, w) on the device."""
        real = to_float(np.asarray(crops), self.device)
        mask = torch.from_numpy(np.ascontiguousarray(masks)).to(self.device).float()
        mask = mask[None, None] if mask.ndim == 2 else mask[:, None]  # (1 or N, 1, S, S)
        masked, mask = network_inputs(real, mask)
        reference = to_float(np.asarray(references), self.device).expand(len(real), -1, -1, -1)
        bottleneck, skips = self.net.encode_face(masked, mask, reference)
        return [bottleneck, *skips]

    @torch.inference_mode()
    def decode(self, features: list[torch.Tensor], windows: np.ndarray) -> np.ndarray:
        """`encode`'s features (N frames) + their windows (N, W, D) -> (N, S, S, 3) uint8."""
        audio = torch.from_numpy(np.ascontiguousarray(windows, np.float32)).to(self.device)
        return to_pixels(self.net.decode(features[0], list(features[1:]), audio))
