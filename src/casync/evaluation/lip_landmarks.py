"""Lip landmarks on 160x160 crops (MediaPipe face mesh, offline), mouth landmark distance (LMD)
and mouth opening.

Landmarks are (N, 40, 2) float32 (x, y) in crop pixels, in `LIP_INDICES` order; a frame where no
face is found is all-NaN. Metrics skip such frames and callers report how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from casync.face.lips import (  # noqa: F401  (re-exported: the metrics' lip geometry)
    CORNER_A,
    CORNER_B,
    INNER_LOWER,
    INNER_UPPER,
    LIP_INDICES,
    mouth_opening,
)


@dataclass(frozen=True)
class LipLandmarks:
    """Per-frame lip landmarks: `points` (N, 40, 2) crop pixels, NaN where `found` is False."""

    points: np.ndarray
    found: np.ndarray

    @property
    def n_missing(self) -> int:
        return int((~self.found).sum())


class LipLandmarkExtractor:
    """MediaPipe face mesh, one crop at a time (static-image mode: no tracking, so a frame's
    landmarks never depend on the frames before it, for generated and real frames alike).

    Crops are upscaled to `detect_size` for detection; when no face is found, the crop is retried
    with `pad_fraction` of replicated border, which helps when the face fills the whole crop."""

    def __init__(
        self, detect_size: int = 256, pad_fraction: float = 0.25, min_confidence: float = 0.5
    ) -> None:
        import mediapipe as mp

        self.detect_size = detect_size
        self.pad_fraction = pad_fraction
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=min_confidence,
        )

    def __call__(self, crops: np.ndarray, progress: bool = False) -> LipLandmarks:
        """crops (N, H, W, 3) uint8 RGB -> lip landmarks in crop pixels."""
        points = np.full((len(crops), len(LIP_INDICES), 2), np.nan, dtype=np.float32)
        for i, crop in enumerate(tqdm(crops, desc="lip landmarks", disable=not progress)):
            found = self.detect(crop)
            if found is not None:
                points[i] = found
        return LipLandmarks(points=points, found=~np.isnan(points).any(axis=(1, 2)))

    def detect(self, crop: np.ndarray) -> np.ndarray | None:
        """One (H, W, 3) uint8 RGB crop -> (40, 2) lip landmarks in crop pixels, or None."""
        height, width = crop.shape[:2]
        scale = self.detect_size / max(height, width)
        size = (round(width * scale), round(height * scale))
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        image = cv2.resize(np.ascontiguousarray(crop), size, interpolation=interpolation)
        for pad_fraction in (0.0, self.pad_fraction):
            pad = round(pad_fraction * self.detect_size)
            padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            result = self._mesh.process(padded)
            if result.multi_face_landmarks:
                mesh = result.multi_face_landmarks[0].landmark
                normalised = np.array([(mesh[i].x, mesh[i].y) for i in LIP_INDICES])
                in_padded = normalised * (padded.shape[1], padded.shape[0])  # (40, 2) px
                return ((in_padded - pad) / scale).astype(np.float32)
        return None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> LipLandmarkExtractor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def per_frame_lmd(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N, K, 2) x 2 -> (N,): mean L2 distance in pixels between corresponding landmarks after
    subtracting each frame's own centroid (so head position does not count). NaN where either
    frame has no landmarks."""
    if gen.shape != real.shape:
        raise ValueError(f"landmark shapes differ: {gen.shape} vs {real.shape}")
    gen_centred = gen - gen.mean(axis=1, keepdims=True)
    real_centred = real - real.mean(axis=1, keepdims=True)
    return np.linalg.norm(gen_centred - real_centred, axis=-1).mean(axis=-1)


def lmd(gen: np.ndarray, real: np.ndarray) -> float:
    """Mouth landmark distance: `per_frame_lmd` averaged over frames where both have landmarks;
    NaN when there is no such frame."""
    values = per_frame_lmd(gen, real)
    valid = ~np.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")
