"""Optional LSE-D / LSE-C with a user-supplied SyncNet expert (Wav2Lip's `SyncNet_color`).

The expert sees 5 consecutive frames (lower half of a 96x96 face, BGR, in [0, 1]) and 0.2 s of
Wav2Lip's mel spectrogram (80 x 16). For each offset in [-15, 15] frames, the mean distance
between the face embedding of window i and the audio embedding of window i + offset is taken over
the windows where both exist. LSE-D is the smallest mean distance, LSE-C the median minus it.

Not comparable digit for digit with papers' LSE, which use syncnet_python's grayscale SyncNet
on its own face track: this is the same recipe with the Wav2Lip expert on CASync's crops.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from casync.audio.frontend import SAMPLE_RATE, MissingWeightsError  # SyncNet also takes 16 kHz

SYNCNET_MISSING_MESSAGE = (
    "LSE-C/LSE-D need a SyncNet expert: set evaluate.syncnet_checkpoint=/path/to/"
    "lipsync_expert.pth (Wav2Lip's SyncNet_color weights)"
)
WINDOW_FRAMES = 5  # video frames per SyncNet window (0.2 s at 25 fps)
MEL_STEPS = 16  # mel frames per window (80 Hz mel: 0.2 s)
MEL_RATE = 80.0  # Wav2Lip mel frames per second (hop 200 at 16 kHz)


class ConvBlock(nn.Module):
    """Conv + BatchNorm + ReLU, optionally residual (Wav2Lip's `Conv2d`; same state-dict keys)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


def _encoder(spec: list[tuple]) -> nn.Sequential:
    """spec rows: (in, out, kernel, stride, padding[, residual])."""
    return nn.Sequential(*(ConvBlock(*row) for row in spec))


class SyncNetColor(nn.Module):
    """Wav2Lip's lip-sync expert: faces (B, 15, 48, 96) and mel (B, 1, 80, 16) -> two (B, 512)
    L2-normalised embeddings."""

    def __init__(self) -> None:
        super().__init__()
        r = True
        self.face_encoder = _encoder([
            (15, 32, 7, 1, 3),                                        # (B, 32, 48, 96)
            (32, 64, 5, (1, 2), 1), (64, 64, 3, 1, 1, r), (64, 64, 3, 1, 1, r),  # (B, 64, 46, 47)
            (64, 128, 3, 2, 1), *[(128, 128, 3, 1, 1, r)] * 3,         # (B, 128, 23, 24)
            (128, 256, 3, 2, 1), *[(256, 256, 3, 1, 1, r)] * 2,        # (B, 256, 12, 12)
            (256, 512, 3, 2, 1), *[(512, 512, 3, 1, 1, r)] * 2,        # (B, 512, 6, 6)
            (512, 512, 3, 2, 1), (512, 512, 3, 1, 0), (512, 512, 1, 1, 0),  # (B, 512, 1, 1)
        ])  # fmt: skip
        self.audio_encoder = _encoder([
            (1, 32, 3, 1, 1), *[(32, 32, 3, 1, 1, r)] * 2,             # (B, 32, 80, 16)
            (32, 64, 3, (3, 1), 1), *[(64, 64, 3, 1, 1, r)] * 2,       # (B, 64, 27, 16)
            (64, 128, 3, 3, 1), *[(128, 128, 3, 1, 1, r)] * 2,         # (B, 128, 9, 6)
            (128, 256, 3, (3, 2), 1), (256, 256, 3, 1, 1, r),          # (B, 256, 3, 3)
            (256, 512, 3, 1, 0), (512, 512, 1, 1, 0),                  # (B, 512, 1, 1)
        ])  # fmt: skip

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = self.audio_encoder(mel).flatten(1)  # (B, 512)
        face = self.face_encoder(faces).flatten(1)  # (B, 512)
        return F.normalize(audio, dim=1), F.normalize(face, dim=1)


def load_syncnet(checkpoint: str | None, device: str = "cpu") -> SyncNetColor:
    """The expert from `evaluate.syncnet_checkpoint` (a Wav2Lip checkpoint with a `state_dict`,
    or a bare state_dict; a DataParallel `module.` prefix is dropped). Raises MissingWeightsError
    with `SYNCNET_MISSING_MESSAGE` when no path is configured."""
    if not checkpoint:
        raise MissingWeightsError(SYNCNET_MISSING_MESSAGE)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"evaluate.syncnet_checkpoint={checkpoint}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = SyncNetColor()
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


def wav2lip_mel(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 (N,) -> (80, T) mel at 80 Hz, Wav2Lip's recipe: pre-emphasis 0.97,
    |STFT| (n_fft 800, hop 200), Slaney mel 55-7600 Hz, dB - 20, scaled to [-4, 4]."""
    import torchaudio

    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    x = torch.cat([x[:1], x[1:] - 0.97 * x[:-1]])
    window = torch.hann_window(800)
    spec = torch.stft(x, 800, hop_length=200, window=window, return_complex=True).abs()
    banks = torchaudio.functional.melscale_fbanks(
        401, 55.0, 7600.0, 80, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )  # (401, 80)
    db = 20 * torch.log10((banks.T @ spec).clamp_min(1e-5)) - 20  # (80, T)
    return (8 * (db + 100) / 100 - 4).clamp(-4, 4).numpy()


def _face_windows(crops: np.ndarray, n_windows: int) -> torch.Tensor:
    """(N, H, W, 3) RGB uint8 crops -> (n_windows, 15, 48, 96): lower half of 96x96, BGR."""
    faces = np.stack([cv2.resize(c, (96, 96), interpolation=cv2.INTER_AREA) for c in crops])
    faces = torch.from_numpy(faces[:, 48:, :, ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    return torch.stack([faces[i : i + WINDOW_FRAMES].flatten(0, 1) for i in range(n_windows)])


def _mel_windows(mel: np.ndarray, n_windows: int, fps: float) -> torch.Tensor:
    """(80, T) -> (n_windows, 1, 80, 16): window i starts at video frame i."""
    starts = [int(MEL_RATE * i / fps) for i in range(n_windows)]
    return torch.from_numpy(np.stack([mel[:, s : s + MEL_STEPS] for s in starts]))[:, None]


@torch.inference_mode()
def embed(
    model: SyncNetColor, crops: np.ndarray, waveform: np.ndarray, fps: float, batch: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Face and audio embeddings (M, 512) of every 5-frame window both the video and the audio
    cover."""
    mel = wav2lip_mel(waveform)
    n_audio = (
        int((mel.shape[1] - MEL_STEPS) * fps / MEL_RATE) + 1 if mel.shape[1] >= MEL_STEPS else 0
    )
    n_windows = min(len(crops) - WINDOW_FRAMES + 1, n_audio)
    if n_windows < 1:
        raise ValueError(f"LSE needs at least {WINDOW_FRAMES} frames and 0.2 s of audio")
    device = next(model.parameters()).device
    faces, mels = (
        _face_windows(crops[: n_windows + WINDOW_FRAMES - 1], n_windows),
        _mel_windows(mel, n_windows, fps),
    )
    audio_out, face_out = [], []
    for start in range(0, n_windows, batch):
        audio, face = model(
            mels[start : start + batch].to(device), faces[start : start + batch].to(device)
        )
        audio_out.append(audio.cpu())
        face_out.append(face.cpu())
    return torch.cat(face_out).numpy(), torch.cat(audio_out).numpy()


def offset_distances(
    face: np.ndarray, audio: np.ndarray, max_offset: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets [-max_offset, max_offset] and, for each, the mean L2 distance between face[i] and
    audio[i + offset] over the i where both exist."""
    offsets = np.arange(-max_offset, max_offset + 1)
    count = len(face)
    means = []
    for offset in offsets:
        lo, hi = max(0, -offset), min(count, count - offset)
        if hi <= lo:
            means.append(np.nan)
            continue
        means.append(np.linalg.norm(face[lo:hi] - audio[lo + offset : hi + offset], axis=1).mean())
    return offsets, np.asarray(means)


def lse_scores(offsets: np.ndarray, mean_distances: np.ndarray) -> dict[str, float]:
    """`lse_d` (min mean distance, lower is better), `lse_c` (median - min, higher is better),
    `av_offset` (the best offset in frames; positive = the audio lags the video)."""
    best = int(np.nanargmin(mean_distances))
    minimum = float(mean_distances[best])
    return {
        "lse_d": minimum,
        "lse_c": float(np.nanmedian(mean_distances)) - minimum,
        "av_offset": float(offsets[best]),
    }


def lse(
    model: SyncNetColor,
    crops: np.ndarray,
    waveform: np.ndarray,
    fps: float,
    max_offset: int = 15,
) -> dict[str, float]:
    """LSE-D / LSE-C of 160x160 RGB crops (N, H, W, 3) uint8 against 16 kHz audio."""
    face, audio = embed(model, crops, waveform, fps)
    return lse_scores(*offset_distances(face, audio, max_offset))
