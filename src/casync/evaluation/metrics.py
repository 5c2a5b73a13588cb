"""All per-method metrics of one set of generated frames against the real ones."""

from __future__ import annotations

import numpy as np

from casync.evaluation.image_metrics import Box, LPIPSMetric, image_metrics
from casync.evaluation.lip_landmarks import LipLandmarks, lmd, mouth_opening
from casync.evaluation.sync import pearson


def landmark_metrics(gen: LipLandmarks, real: LipLandmarks) -> dict[str, float]:
    """`lmd` (px), `opening_corr` (Pearson of mouth opening over time), and how many frames
    they used and why others were skipped (`no_face_gen`, `no_face_real`)."""
    both = gen.found & real.found
    return {
        "lmd": lmd(gen.points, real.points),
        "opening_corr": pearson(mouth_opening(gen.points), mouth_opening(real.points)),
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
    return scores | landmark_metrics(gen_lips, real_lips)
