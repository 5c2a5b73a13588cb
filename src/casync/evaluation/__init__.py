"""Evaluation: image metrics, lip landmarks (LMD, mouth opening), the audio-shift sync check,
optional SyncNet LSE, reports and plots. Pure functions on arrays; `casync.evaluate` runs them."""

from casync.evaluation.image_metrics import (
    PSNR_CAP_DB,
    RANDOM_BACKBONE_LABEL,
    LPIPSMetric,
    image_metrics,
    mouth_box,
    psnr,
    ssim,
)
from casync.evaluation.lip_landmarks import (
    LIP_INDICES,
    LipLandmarkExtractor,
    LipLandmarks,
    lmd,
    mouth_opening,
    per_frame_lmd,
)
from casync.evaluation.metrics import landmark_metrics, method_metrics
from casync.evaluation.plots import plot_mouth_opening
from casync.evaluation.report import markdown_report, write_report
from casync.evaluation.sync import (
    CORRELATION_MARGIN_MIN,
    SHIFTS_S,
    ShiftCheck,
    pearson,
    shift_check,
    shift_frames,
    shift_windows,
)
from casync.evaluation.syncnet import SYNCNET_MISSING_MESSAGE, SyncNetColor, load_syncnet, lse

__all__ = [
    "CORRELATION_MARGIN_MIN",
    "LIP_INDICES",
    "PSNR_CAP_DB",
    "RANDOM_BACKBONE_LABEL",
    "SHIFTS_S",
    "SYNCNET_MISSING_MESSAGE",
    "LPIPSMetric",
    "LipLandmarkExtractor",
    "LipLandmarks",
    "ShiftCheck",
    "SyncNetColor",
    "image_metrics",
    "landmark_metrics",
    "lmd",
    "load_syncnet",
    "lse",
    "markdown_report",
    "method_metrics",
    "mouth_box",
    "mouth_opening",
    "pearson",
    "per_frame_lmd",
    "plot_mouth_opening",
    "psnr",
    "shift_check",
    "shift_frames",
    "shift_windows",
    "ssim",
    "write_report",
]
