"""All per-method metrics of one set of generated frames against the real ones."""

from __future__ import annotations

import cv2
import numpy as np

from casync.evaluation.image_metrics import Box, LPIPSMetric, image_metrics
from casync.evaluation.lip_landmarks import LipLandmarks, lmd, mouth_opening
from casync.evaluation.sync import pearson


def landmark_metrics(gen: LipLandmarks, real: LipLandmarks) -> dict[str, float]:
    """`lmd` (px), `opening_corr` (Pearson of mouth opening over time), `opening_amplitude`
    (how far the mouth opens and closes, relative to the real one), and how many frames
    they used and why others were skipped (`no_face_gen`, `no_face_real`)."""
    both = gen.found & real.found
    gen_opening, real_opening = mouth_opening(gen.points), mouth_opening(real.points)
    return {
        "lmd": lmd(gen.points, real.points),
        "opening_corr": pearson(gen_opening, real_opening),
        "opening_amplitude": opening_amplitude(gen_opening[both], real_opening[both]),
        "landmark_frames": float(both.sum()),
        "no_face_gen": float(gen.n_missing),
        "no_face_real": float(real.n_missing),
    }


def method_metrics(
    gen_frames: np.ndarray,
    real_frames: np.ndarray,
    gen_lips: LipLandmarks,
    real_lips: LipLandmarks,
    box: Box,
    lpips_metric: LPIPSMetric | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Image metrics (crop and mouth box) and landmark metrics in one flat dict."""
    scores = image_metrics(gen_frames, real_frames, box, lpips_metric, progress=progress)
    scores["mouth/sharpness"] = mouth_sharpness(gen_frames, real_frames, box)
    return scores | landmark_metrics(gen_lips, real_lips)


def opening_amplitude(gen_opening: np.ndarray, real_opening: np.ndarray) -> float:
    """Standard deviation over time of the generated mouth opening / the real one's: 1 moves as
    much as the real mouth, 0 is a still mouth (a blur that barely opens scores low). NaN
    without at least two frames with lips in both."""
    if len(real_opening) < 2:
        return float("nan")
    real_spread = float(np.std(real_opening))
    return float(np.std(gen_opening)) / real_spread if real_spread > 0 else float("nan")


def laplacian_variance(frames: np.ndarray, box: Box) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N,) variance of the grey-level Laplacian inside `box` (y0, y1,
    x0, x1): the usual focus measure, high for sharp edges (lips, teeth), low for a smear."""
    y0, y1, x0, x1 = box
    values = [
        cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(f[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY),
                      cv2.CV_64F).var()
        for f in frames
    ]  # fmt: skip
    return np.asarray(values, dtype=np.float64)


def mouth_sharpness(gen_frames: np.ndarray, real_frames: np.ndarray, box: Box) -> float:
    """Mean Laplacian variance in the mouth box, generated / real (1: as sharp as the real
    mouth; a blur scores well below 1)."""
    real = laplacian_variance(real_frames, box).mean()
    return float(laplacian_variance(gen_frames, box).mean() / real) if real > 0 else float("nan")
