"""Lip geometry on MediaPipe face-mesh points: which points are the lips, and how open the
mouth is. The one home of both, for preprocessing (reference frames, audio-video offset),
training and evaluation alike."""

from __future__ import annotations

import numpy as np

# The 40 face-mesh points of mp.solutions.face_mesh.FACEMESH_LIPS (outer + inner lip contours),
# sorted; spelled out so the metrics import without mediapipe (a test checks they agree).
LIP_INDICES: tuple[int, ...] = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
    185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405,
    409, 415,
)  # fmt: skip
INNER_UPPER, INNER_LOWER = LIP_INDICES.index(13), LIP_INDICES.index(14)  # inner-lip midpoints
CORNER_A, CORNER_B = LIP_INDICES.index(61), LIP_INDICES.index(291)  # outer mouth corners


def lip_points(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 2) face-mesh points -> (..., 40, 2) lip points in `LIP_INDICES` order."""
    return mesh[..., list(LIP_INDICES), :]


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """(N, 40, 2) lip points (or (N, 478, 2) mesh points) -> (N,): inner-lip vertical gap
    (landmark 13 to 14) divided by mouth width (corner 61 to 291). Unitless, so it does not
    change with face scale; NaN where the points are missing."""
    if points.shape[-2] != len(LIP_INDICES):
        points = lip_points(points)
    gap = np.linalg.norm(points[:, INNER_UPPER] - points[:, INNER_LOWER], axis=-1)
    width = np.linalg.norm(points[:, CORNER_A] - points[:, CORNER_B], axis=-1)
    return gap / np.maximum(width, 1e-6)
