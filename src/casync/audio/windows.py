"""Align audio feature frames (50 Hz) with video frames: one centred window per video frame."""

from __future__ import annotations

import numpy as np


def window_indices(n_frames: int, fps: float, window: int, feature_rate: int, n_features: int):
    """(n_frames, window) feature indices. Video frame j covers [j/fps, (j+1)/fps); its window is
    centred on the frame's mid time. Indices past either end repeat the edge frame."""
    centres = (np.arange(n_frames) + 0.5) / fps * feature_rate  # in feature frames
    starts = np.floor(centres - window / 2 + 0.5).astype(np.int64)
    indices = starts[:, None] + np.arange(window)[None, :]
    return np.clip(indices, 0, max(n_features - 1, 0))


def frame_windows(
    features: np.ndarray, n_frames: int, fps: float, window: int, feature_rate: int = 50
) -> np.ndarray:
    """features (T, D) -> (n_frames, window, D), same dtype."""
    if len(features) == 0:
        raise ValueError("no audio features: the audio is empty")
    return features[window_indices(n_frames, fps, window, feature_rate, len(features))]
