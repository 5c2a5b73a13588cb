"""Image-quality metrics (PSNR, SSIM, LPIPS) on whole 160x160 crops and on the mouth region.

Frames are (N, H, W, 3) uint8 RGB. The mouth region is one fixed box per evaluation: the
bounding box of the union of the per-frame masks (`mouth_box`), so every method is scored on the
same pixels. Per-frame scores are averaged over frames.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from tqdm import tqdm

from casync.audio.frontend import MissingWeightsError

PSNR_CAP_DB = 100.0  # identical frames have infinite PSNR; JSON has no inf, so cap per frame
SSIM_KERNEL = 11  # torchmetrics' Gaussian window; regions must be at least this large
RANDOM_BACKBONE_LABEL = "LPIPS (random backbone, not perceptual)"
# lpips' `net` name -> torchvision model name (for the ImageNet weights in torch's hub cache)
_TORCHVISION_NAMES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open, in crop pixels


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def mouth_box(masks: np.ndarray, margin: int = 4, min_size: int = SSIM_KERNEL) -> Box:
    """Bounding box of the union of `masks` (N, H, W) (nonzero = mouth region), grown by `margin`
    pixels and to at least `min_size` per side, clipped to the frame."""
    union = np.asarray(masks).reshape(-1, *masks.shape[-2:]).any(axis=0)
    if not union.any():
        raise ValueError("the mouth masks are empty: no region to score")
    height, width = union.shape
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    y0, y1 = _grow(rows[0] - margin, rows[-1] + 1 + margin, min_size, height)
    x0, x1 = _grow(cols[0] - margin, cols[-1] + 1 + margin, min_size, width)
    return y0, y1, x0, x1


def _grow(start: int, stop: int, min_size: int, limit: int) -> tuple[int, int]:
    short = max(0, min_size - (stop - start))
    start, stop = start - short // 2, stop + short - short // 2
    return int(max(0, start)), int(min(limit, stop))


def psnr(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of (N, 3, H, W) tensors in [0, 1], capped at `PSNR_CAP_DB`."""
    values = peak_signal_noise_ratio(gen, real, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return values.clamp(max=PSNR_CAP_DB)


def ssim(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM (11x11 Gaussian window) of (N, 3, H, W) tensors in [0, 1]."""
    if min(gen.shape[-2:]) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs regions of at least {SSIM_KERNEL} px, got {gen.shape[-2:]}")
    return structural_similarity_index_measure(gen, real, data_range=1.0, reduction="none")


class LPIPSMetric:
    """LPIPS distance (lower is closer). `label` names what the number is.

    The backbone's ImageNet weights come from `weights` (a torchvision state_dict file, config key
    `metrics.lpips_weights`) or torch's hub cache. Without them it raises, unless
    `allow_random_backbone` (`evaluate.allow_random_backbone`): then the backbone is random, the
    number is not perceptual, and `label` says so."""

    def __init__(
        self,
        net: str = "alex",
        weights: str | None = None,
        allow_random_backbone: bool = False,
        device: str = "cpu",
    ) -> None:
        import lpips

        if net not in _TORCHVISION_NAMES:
            raise ValueError(
                f"metrics.lpips={net!r}: choose one of {list(_TORCHVISION_NAMES)} or none"
            )
        path = _backbone_weights(net, weights)
        if path is None and not allow_random_backbone:
            raise MissingWeightsError(
                f"LPIPS needs ImageNet weights for its '{net}' backbone and none are on this "
                f"machine. Set metrics.lpips_weights=/path/to/{_TORCHVISION_NAMES[net]}.pth (a "
                "torchvision state_dict), or metrics.lpips=none (casync.evaluate also takes "
                f"evaluate.allow_random_backbone=true, reported as '{RANDOM_BACKBONE_LABEL}')."
            )
        # pnet_rand=True: lpips must not try to download the backbone; we load it below.
        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if path is not None:
            _load_backbone(self.model.net, path)
        self.model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.is_perceptual = path is not None
        self.label = f"LPIPS ({net})" if self.is_perceptual else RANDOM_BACKBONE_LABEL

    @torch.inference_mode()
    def __call__(self, gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Per-frame LPIPS of (N, 3, H, W) tensors in [0, 1] -> (N,)."""
        out = self.model(gen.to(self.device), real.to(self.device), normalize=True)
        return out.flatten().cpu()  # (N, 1, 1, 1) -> (N,)


def _backbone_weights(net: str, weights: str | None) -> Path | None:
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"metrics.lpips_weights={weights}: no such file")
        return path
    import torchvision

    url = torchvision.models.get_model_weights(_TORCHVISION_NAMES[net]).IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return cached if cached.is_file() else None


def _load_backbone(backbone: torch.nn.Module, path: Path) -> None:
    """Load a torchvision state_dict (`features.<i>.*`) into lpips' sliced copy
    (`slice<k>.<i>.*`: lpips keeps torchvision's layer index <i> inside each slice)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    mapped, missing = {}, []
    for key in backbone.state_dict():
        source = re.sub(r"^slice\d+\.", "features.", key)
        if source in state:
            mapped[key] = state[source]
        else:
            missing.append(source)
    if missing:
        raise ValueError(
            f"metrics.lpips_weights={path} is not a torchvision state_dict for this backbone: "
            f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}"
        )
    backbone.load_state_dict(mapped)


def image_metrics(
    gen_frames: np.ndarray,
    real_frames: np.ndarray,
    box: Box,
    lpips_metric: LPIPSMetric | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, float]:
    """Mean per-frame `crop/{psnr,ssim,lpips}` and `mouth/{psnr,ssim,lpips}` (the `box` region)
    of generated vs real frames, both (N, H, W, 3) uint8. LPIPS keys only with `lpips_metric`."""
    if gen_frames.shape != real_frames.shape:
        raise ValueError(f"frame shapes differ: {gen_frames.shape} vs {real_frames.shape}")
    y0, y1, x0, x1 = box
    scores: dict[str, list[torch.Tensor]] = {}
    starts = range(0, len(gen_frames), batch_size)
    for start in tqdm(starts, desc="image metrics", disable=not progress, leave=False):
        gen = to_tensor(gen_frames[start : start + batch_size])
        real = to_tensor(real_frames[start : start + batch_size])
        regions = {"crop": (gen, real), "mouth": (gen[..., y0:y1, x0:x1], real[..., y0:y1, x0:x1])}
        for region, (g, r) in regions.items():
            scores.setdefault(f"{region}/psnr", []).append(psnr(g, r))
            scores.setdefault(f"{region}/ssim", []).append(ssim(g, r))
            if lpips_metric is not None:
                scores.setdefault(f"{region}/lpips", []).append(lpips_metric(g, r))
    return {key: float(torch.cat(values).mean()) for key, values in scores.items()}
