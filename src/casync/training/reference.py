"""The fixed reference crop shipped in a checkpoint: a closed-mouth training frame of the speaker.

Inference feeds the same reference for every frame, so a closed mouth here makes silence (and
the start of every utterance) come out closed and still.
"""

from __future__ import annotations

import numpy as np

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14  # MediaPipe face mesh indices
MOUTH_LEFT, MOUTH_RIGHT = 61, 291


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N, 478, 2) -> (N,) inner-lip gap divided by mouth width (scale-free)."""
    gap = np.linalg.norm(landmarks[:, UPPER_INNER_LIP] - landmarks[:, LOWER_INNER_LIP], axis=-1)
    width = np.linalg.norm(landmarks[:, MOUTH_LEFT] - landmarks[:, MOUTH_RIGHT], axis=-1)
    return gap / np.maximum(width, 1e-6)


def choose_reference_crop(datamodule) -> np.ndarray | None:
    """(H, W, 3) uint8 crop from the first source's training range with the most closed mouth
    among frames where a face was found; None if the datamodule has no sources."""
    if not getattr(datamodule, "sources", None):
        return None
    source = datamodule.sources[0]
    train_range = datamodule.split()[0][0]
    frames = np.arange(train_range.start, train_range.stop)
    found = np.asarray(source.face_found[frames], dtype=bool)
    candidates = frames[found] if found.any() else frames
    opening = mouth_opening(np.asarray(source.landmarks[candidates], dtype=np.float32))
    return np.array(source.crops[candidates[int(np.argmin(opening))]])
