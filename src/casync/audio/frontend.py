"""Frozen audio front ends: 16 kHz mono waveform -> (T, feature_dim) features at 50 Hz.
(`WhisperFrontEnd` lives in `casync.audio.whisper`.)

`HubertFrontEnd` loads a `transformers` HubertModel from a hub id or a local directory
(`audio.model_name_or_path`); `MelFrontEnd` needs no weights and works fully offline.
Both expose `name`, `feature_dim`, `feature_rate` and `describe()`, which preprocessing stores in
the cache and inference checks against the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

SAMPLE_RATE = 16_000
FEATURE_RATE = 50  # every front end's frame rate: HuBERT's and Whisper's 20 ms hop
HOP = SAMPLE_RATE // FEATURE_RATE  # 320 samples per feature frame


class AudioFrontEnd(Protocol):
    name: str
    feature_dim: int
    feature_rate: int
    window: int

    def __call__(self, waveform: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class Chunking:
    """How an exact front end's features depend on the audio (see `casync.audio.windows`):
    chunk k, feature frames [k hop, (k+1) hop), is `encode_chunk` of the samples `span(k)`."""

    hop: int  # feature frames per chunk
    context: int  # samples before the chunk's first frame centre
    lookahead: int  # samples after the chunk's last hop
    pad: str = "zeros"  # past the audio's ends: "zeros" (Whisper) or "reflect" (torch center=True)

    def span(self, k: int) -> tuple[int, int]:
        """Absolute samples [a, b) that chunk k is computed from."""
        return k * self.hop * HOP - self.context, (k + 1) * self.hop * HOP + self.lookahead


class MissingWeightsError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable."""


class HubertFrontEnd:
    """A frozen HuBERT backbone; features from `layer` (-1: last hidden state)."""

    def __init__(
        self,
        model_name_or_path: str = "facebook/hubert-large-ls960-ft",
        feature_dim: int = 1024,
        window: int = 10,
        layer: int = -1,
        device: str = "cpu",
        chunk_seconds: float = 30.0,
    ) -> None:
        from transformers import HubertModel

        self.name = "hubert"
        self.model_name_or_path = str(model_name_or_path)
        self.feature_rate = FEATURE_RATE
        self.window = window
        self.layer = layer
        self.device = torch.device(device)
        self.chunk_samples = int(chunk_seconds * SAMPLE_RATE)
        try:
            self.model = HubertModel.from_pretrained(
                self.model_name_or_path,
                local_files_only=os.environ.get("HF_HUB_OFFLINE", "0") == "1",
            )
        except OSError as error:
            raise MissingWeightsError(
                f"HuBERT weights '{self.model_name_or_path}' are not on this machine and could not "
                "be downloaded. Set audio.model_name_or_path=/path/to/hubert (a directory with "
                "config.json and the weights, e.g. from `save_pretrained`), or use the offline "
                f"front end with audio=mel. ({type(error).__name__}: {error})"
            ) from error
        self.model.eval().requires_grad_(False).to(self.device)
        self.feature_dim = int(self.model.config.hidden_size)
        if feature_dim != self.feature_dim:
            raise ValueError(
                f"audio.feature_dim={feature_dim} but '{self.model_name_or_path}' has hidden size "
                f"{self.feature_dim}: set audio.feature_dim={self.feature_dim}"
            )

    @torch.inference_mode()
    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """waveform: (N,) float32 at 16 kHz -> (T, feature_dim) float32, T ~= N / 320.

        Long audio runs in chunks of `chunk_seconds` to bound memory (HuBERT attention is
        quadratic in length); chunk seams only lose context at the chunk edge."""
        chunks = []
        for start in range(0, max(len(waveform), 1), self.chunk_samples):
            piece = waveform[start : start + self.chunk_samples]
            piece = np.pad(piece, (0, max(0, 400 - len(piece))))  # one conv receptive field
            x = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))[None]
            x = (x - x.mean()) / (x.std() + 1e-7)  # HuBERT's feature extractor normalisation
            out = self.model(x.to(self.device), output_hidden_states=self.layer != -1)
            hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
            chunks.append(hidden[0].float().cpu().numpy())
        return np.concatenate(chunks, axis=0)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model_name_or_path": self.model_name_or_path,
            "layer": self.layer,
            "feature_dim": self.feature_dim,
            "feature_rate": self.feature_rate,
            "window": self.window,
        }


class MelFrontEnd:
    """Log-mel spectrogram, 20 ms hop (50 Hz, aligned with HuBERT), no pretrained weights."""

    def __init__(
        self, n_mels: int = 80, window: int = 10, n_fft: int = 800, feature_dim: int | None = None
    ) -> None:
        import torchaudio

        if feature_dim is not None and feature_dim != n_mels:
            raise ValueError(f"audio.feature_dim={feature_dim} must equal audio.n_mels={n_mels}")
        self.name = "mel"
        self.feature_dim = n_mels
        self.feature_rate = FEATURE_RATE
        self.window = window
        self.n_fft = n_fft
        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=SAMPLE_RATE // FEATURE_RATE,
            n_mels=n_mels,
            center=True,
        )
        # Frame t alone: the STFT of samples [320 t - n_fft / 2, 320 t + n_fft / 2), reflected
        # at the ends as center=True pads.
        self.chunking = Chunking(1, n_fft // 2, n_fft // 2 - HOP, pad="reflect")
        self._frame_transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=HOP,
            n_mels=n_mels,
            center=False,
        )

    @torch.inference_mode()
    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """waveform: (N,) float32 at 16 kHz -> (N // 320 + 1, n_mels) float32 log-mel."""
        x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        mel = self.transform(x)  # (n_mels, T)
        return torch.log(mel.clamp_min(1e-5)).T.numpy()  # (T, n_mels)

    @torch.inference_mode()
    def encode_chunk(self, segment: np.ndarray) -> np.ndarray:
        """(n_fft,) samples -> (1, n_mels): one frame, the same numbers however it is called."""
        mel = self._frame_transform(torch.from_numpy(np.ascontiguousarray(segment)))  # (n_mels, 1)
        return torch.log(mel.clamp_min(1e-5)).T.numpy()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "n_mels": self.feature_dim,
            "n_fft": self.n_fft,
            "feature_dim": self.feature_dim,
            "feature_rate": self.feature_rate,
            "window": self.window,
        }
