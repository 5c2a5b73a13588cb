"""Helpers of the live tests: a tiny random checkpoint, a short clip of the GRID sample the
repository carries, speech with pauses from the same sample, a prepared live avatar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from tests.clips import sample_audio, sample_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "grid_s1_sample.mp4"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
SPEECH_S = (0.9, 2.4)  # a stretch of the sample where talker 1 speaks


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from casync.contract import save_generator_checkpoint
    from casync.model import CASyncNet

    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    return path


def short_clip(path: Path, seconds: float = 2.0) -> Path:
    """The sample's first `seconds` (video and audio) as an MP4."""
    frames = sample_frames(SAMPLE, int(round(seconds * 25)))
    return write_clip(path, frames, audio=sample_audio(SAMPLE, seconds))


def speech(seconds: float | None = None) -> np.ndarray:
    """(N,) float32 16 kHz: real speech from the sample."""
    a, b = SPEECH_S
    audio = sample_audio(SAMPLE, b)[int(a * SAMPLE_RATE) :]
    return audio if seconds is None else audio[: int(seconds * SAMPLE_RATE)]


def speech_with_pauses(pause_s: float = 1.5, repeats: int = 2) -> np.ndarray:
    """pause, speech, pause, speech, ... pause: the fake microphone's WAV."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    return np.concatenate([pause, *[np.concatenate([speech(), pause]) for _ in range(repeats)]])
