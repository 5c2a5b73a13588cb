"""Track a face through a video: per-frame landmarks, gap filling, temporal smoothing of the crop.

`track_video` is the single source of the crop geometry: preprocessing stores its transforms and
inference calls it on a new video to get the same crops. Frames are streamed (decode runs in a
background thread while the face mesh runs); only landmarks and 4 numbers per frame are kept, and
the smoothing is a second pass over those.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from casync.face.crop import crop_params, params_to_transform
from casync.face.landmarks import N_LANDMARKS, FaceTracker
from casync.media import MediaError
from casync.media.video import iter_frames, prefetch, probe_video


class NoFaceError(MediaError):
    """No (or too few) frames of a video show a detectable face."""


@dataclass
class TrackResult:
    landmarks: np.ndarray  # (N, 478, 2) float32 frame pixels; NaN where no face was found
    face_found: np.ndarray  # (N,) bool
    raw_params: np.ndarray  # (N, 4) per-frame (cx, cy, side, angle), gaps filled
    params: np.ndarray  # (N, 4) smoothed crop parameters
    transforms: np.ndarray  # (N, 2, 3) float32 frame -> crop (cv2.warpAffine convention)
    frame_size: tuple[int, int]  # (width, height)
    crop_size: int

    def __len__(self) -> int:
        return len(self.face_found)

    def report(self) -> dict:
        """Frames without a face, what was done about them, and crop jitter before/after
        smoothing (mean frame-to-frame motion of the crop centre, in crop pixels)."""
        missing = ~self.face_found
        gaps = _runs(missing)
        return {
            "frames": len(self),
            "frames_without_face": int(missing.sum()),
            "longest_gap_frames": max((stop - start for start, stop in gaps), default=0),
            "gap_handling": "crop interpolated between the nearest frames with a face; held at "
            "the start/end of the video",
            "jitter_raw_px": _jitter(self.raw_params, self.crop_size),
            "jitter_smoothed_px": _jitter(self.params, self.crop_size),
        }


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges where `flags` is True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _jitter(params: np.ndarray, crop_size: int) -> float:
    if len(params) < 2:
        return 0.0
    motion = np.linalg.norm(np.diff(params[:, :2], axis=0), axis=1) / params[1:, 2] * crop_size
    return float(motion.mean())


def fill_gaps(params: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linearly interpolate parameters over frames without a face; hold them at the ends."""
    if not found.any():
        raise ValueError("no frame has a face")
    index = np.arange(len(params))
    return np.stack(
        [np.interp(index, index[found], params[found, c]) for c in range(params.shape[1])], axis=1
    )


def smooth(params: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing over time (edges repeat), sigma in frames."""
    if sigma <= 0 or len(params) < 2:
        return params.copy()
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(params, ((radius, radius), (0, 0)), mode="edge")
    return np.stack(
        [np.convolve(padded[:, c], kernel, mode="valid") for c in range(params.shape[1])], axis=1
    )


def track_frames(
    frames: Iterable[np.ndarray],
    crop_size: int = 160,
    smoothing: float = 1.5,
    total: int | None = None,
    desc: str = "landmarks",
) -> TrackResult:
    """Run the face mesh over `frames` (consumed once) and build smoothed crop transforms.

    Raises ValueError if no frame has a face (`track_video`: NoFaceError naming the file)."""
    landmarks, found, raw = [], [], []
    frame_size = (0, 0)
    with FaceTracker() as tracker:
        for frame in tqdm(frames, total=total, desc=desc, unit="frame", leave=False):
            frame_size = (frame.shape[1], frame.shape[0])
            points = tracker(frame)
            found.append(points is not None)
            if points is None:
                landmarks.append(np.full((N_LANDMARKS, 2), np.nan, np.float32))
                raw.append(np.zeros(4))
            else:
                landmarks.append(points[:, :2])
                raw.append(crop_params(points))
    found_array = np.array(found, dtype=bool)
    raw_params = fill_gaps(np.array(raw).reshape(-1, 4), found_array)
    params = smooth(raw_params, smoothing)
    return TrackResult(
        landmarks=np.array(landmarks, dtype=np.float32).reshape(-1, N_LANDMARKS, 2),
        face_found=found_array,
        raw_params=raw_params,
        params=params,
        transforms=params_to_transform(params, crop_size),
        frame_size=frame_size,
        crop_size=crop_size,
    )


def track_video(
    path: str | Path, fps: float = 25.0, crop_size: int = 160, smoothing: float = 1.5
) -> TrackResult:
    """Decode `path` at constant `fps` (streamed, decode overlapped with the mesh) and track it.

    The frame order and count match `casync.media.video.iter_frames(path, fps)` exactly, so
    `transforms[k]` applies to the k-th frame of that iterator."""
    info = probe_video(path)
    total = round(info.duration_s * fps) or None
    try:
        return track_frames(prefetch(iter_frames(path, fps)), crop_size, smoothing, total=total)
    except ValueError as error:
        if isinstance(error, MediaError):
            raise
        raise NoFaceError(
            path,
            "a face was found in only 0% of the frames",
            "Use footage where the speaker's face is visible and frontal most of the time.",
        ) from error
