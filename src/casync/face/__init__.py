"""Face landmarks (MediaPipe face mesh), temporally smoothed lower-face crops, masks, paste-back."""

from casync.face.crop import (
    crop_params,
    cut_crop,
    feathered,
    params_to_transform,
    paste_back,
    region_mask,
    stored_mask,
    transform_points,
)
from casync.face.landmarks import N_LANDMARKS, FaceTracker
from casync.face.lips import LIP_INDICES
from casync.face.track import NoFaceError, TrackResult, track_frames, track_video

__all__ = [
    "LIP_INDICES",
    "N_LANDMARKS",
    "FaceTracker",
    "NoFaceError",
    "TrackResult",
    "crop_params",
    "cut_crop",
    "feathered",
    "params_to_transform",
    "paste_back",
    "region_mask",
    "stored_mask",
    "track_frames",
    "track_video",
    "transform_points",
]
