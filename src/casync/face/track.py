"""Track a face through a video: per-frame landmarks, gap filling, temporal smoothing of the crop.

`track_frames` is the single source of the crop geometry: preprocessing stores its transforms and
inference calls it on a new video to get the same crops. It works in one streamed pass with a fixed
lag: a frame's smoothed crop box is final once the face mesh has seen `radius` frames past it (or
the end of a gap without a face), and `on_frame(frame, transform)` then gets that frame, so callers
cut crops without decoding the video twice. Only frames inside the lag are held in memory.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from casync.face.crop import crop_params, params_to_transform
from casync.face.landmarks import N_LANDMARKS, FaceTracker
from casync.media import MediaError
from casync.media.video import iter_frames, prefetch, probe_video

# A gap without a face is bridged by interpolation when the face comes back before this many bytes
# of frames have piled up waiting for it (~40 frames of 1080p, ~340 of 512x512); longer gaps hold
# the last box. The limit is in frame bytes whether or not frames are kept, so preprocessing and
# inference get the same boxes for the same video.
GAP_BUFFER_BYTES = 256 << 20
NO_POINTS = np.full((N_LANDMARKS, 2), np.nan, np.float32)  # a frame's landmarks without a face


class NoFaceError(MediaError):
    """No (or too few) frames of a video show a detectable face (preprocessing and inference)."""


NO_FACE_FIX = (
    "Use footage where the speaker's face is visible, roughly frontal and at least ~100 px wide "
    "most of the time."
)


@dataclass
class TrackResult:
    landmarks: np.ndarray  # (N, 478, 2) float32 frame pixels; NaN where no face was found
    face_found: np.ndarray  # (N,) bool
    raw_params: np.ndarray  # (N, 4) per-frame (cx, cy, side, angle), gaps filled
    params: np.ndarray  # (N, 4) smoothed crop parameters
    transforms: np.ndarray  # (N, 2, 3) float32 frame -> crop (cv2.warpAffine convention)
    frame_size: tuple[int, int]  # (width, height)
    crop_size: int
    held_frames: int = 0  # frames of gaps too long to bridge (box held, not interpolated)

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
            "longest_gap_frames": int(max((stop - start for start, stop in gaps), default=0)),
            "gap_handling": "crop interpolated between the nearest frames with a face; held at "
            "the start/end of the video and through gaps too long to buffer "
            f"({self.held_frames} frames held)",
            "jitter_raw_px": _jitter(self.raw_params, self.crop_size),
            "jitter_smoothed_px": _jitter(self.params, self.crop_size),
        }


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges where `flags` is True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, stops, strict=True))  # plain ints: the report goes to JSON


def _jitter(params: np.ndarray, crop_size: int) -> float:
    if len(params) < 2:
        return 0.0
    motion = np.linalg.norm(np.diff(params[:, :2], axis=0), axis=1) / params[1:, 2] * crop_size
    return float(motion.mean())


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised taps of radius ceil(3 sigma) (a single 1 for sigma <= 0)."""
    if sigma <= 0:
        return np.ones(1)
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return kernel / kernel.sum()


class _FixedLagSmoother:
    """Raw crop boxes in (None where no face), smoothed boxes out with a lag of `radius` frames.

    Gaps are interpolated linearly between the boxes on either side. They are held at the start
    and end, and held for the oldest frames while more than `max_gap` wait, which bounds the lag.
    Smoothing is a Gaussian over time whose window repeats the first and last box at the ends
    (zero phase). `held` counts the frames whose box was held rather than interpolated."""

    def __init__(self, sigma: float) -> None:
        self.kernel = gaussian_kernel(sigma)
        self.radius = len(self.kernel) // 2
        self.raw: list[np.ndarray | None] = []
        self.resolved = 0  # raw[:resolved] are final
        self.emitted = 0  # smoothed boxes handed out so far
        self.held = 0

    def push(self, box: np.ndarray | None, max_gap: int, fallback: np.ndarray) -> list[np.ndarray]:
        """Add frame k's raw box -> the smoothed boxes that became final. `fallback` is the box
        for frames before the first face when that face is more than `max_gap` frames away."""
        k = len(self.raw)
        self.raw.append(box)
        if box is not None:
            self._bridge(k, box)
        elif k + 1 - self.resolved > max_gap:
            if self.resolved == 0:
                self.raw[0], self.resolved, self.held = fallback, 1, 1
            self._hold(k + 1 - max_gap)  # the oldest frame goes; the newest max_gap still wait
        return self._ready(final=False)

    def finish(self) -> list[np.ndarray]:
        self._hold(len(self.raw))
        return self._ready(final=True)

    def _bridge(self, k: int, box: np.ndarray) -> None:
        start = self.resolved
        if start == 0:  # the first face: hold its box back to frame 0
            self.raw[:k] = [box] * k
            self.held += k
        elif start < k:
            anchor = self.raw[start - 1]
            for i in range(start, k):
                self.raw[i] = anchor + (box - anchor) * ((i - start + 1) / (k - start + 1))
        self.resolved = k + 1

    def _hold(self, stop: int) -> None:
        self.held += stop - self.resolved
        self.raw[self.resolved : stop] = [self.raw[self.resolved - 1]] * (stop - self.resolved)
        self.resolved = stop

    def _ready(self, final: bool) -> list[np.ndarray]:
        """Smoothed boxes whose whole window is resolved (at the end: all, edges repeated)."""
        last = len(self.raw) - 1
        stop = self.resolved if final else self.resolved - self.radius
        out = []
        for i in range(self.emitted, stop):
            taps = np.clip(np.arange(i - self.radius, i + self.radius + 1), 0, last)
            out.append(self.kernel @ np.array([self.raw[j] for j in taps]))
        self.emitted = max(self.emitted, stop)
        return out


def _first_frame_settings(frame: np.ndarray) -> tuple[tuple[int, int], int, np.ndarray]:
    """What the first frame fixes for a video: its (width, height), the longest gap without a
    face that is bridged (frames within `GAP_BUFFER_BYTES`), the box held until a face is seen."""
    height, width = frame.shape[:2]
    fallback = np.array([width / 2, height / 2, min(width, height) / 2, 0.0])
    return (width, height), max(1, GAP_BUFFER_BYTES // frame.nbytes), fallback


def track_frames(
    frames: Iterable[np.ndarray],
    crop_size: int,
    smoothing: float,
    total: int | None = None,
    desc: str = "landmarks",
    on_frame: Callable[[np.ndarray, np.ndarray], None] | None = None,
    source: str | Path = "the frames",
) -> TrackResult:
    """Run the face mesh over `frames` (consumed once) and build smoothed crop transforms.

    With `on_frame`, every frame is handed back in order with its final (2, 3) transform, a few
    frames behind the mesh. Raises NoFaceError naming `source` (the video's path) if no frame
    has a face."""
    smoother = _FixedLagSmoother(smoothing)
    landmarks, found, waiting, params = [], [], deque(), []
    frame_size, max_gap, fallback = (0, 0), 1, np.zeros(4)

    def hand_out(boxes: list[np.ndarray]) -> None:
        for box in boxes:
            params.append(box)
            frame = waiting.popleft()
            if on_frame is not None:
                on_frame(frame, params_to_transform(box, crop_size))

    with FaceTracker() as tracker:
        for frame in tqdm(frames, total=total, desc=desc, unit="frame", leave=False):
            if not landmarks:
                frame_size, max_gap, fallback = _first_frame_settings(frame)
            points = tracker(frame)
            found.append(points is not None)
            landmarks.append(NO_POINTS if points is None else points[:, :2])
            waiting.append(frame if on_frame is not None else None)
            box = None if points is None else crop_params(points)
            hand_out(smoother.push(box, max_gap, fallback))
    if not any(found):
        raise NoFaceError(source, "no face found in any frame", NO_FACE_FIX)
    hand_out(smoother.finish())
    params_array = np.array(params).reshape(-1, 4)
    return TrackResult(
        landmarks=np.array(landmarks, dtype=np.float32).reshape(-1, N_LANDMARKS, 2),
        face_found=np.array(found, dtype=bool),
        raw_params=np.array(smoother.raw).reshape(-1, 4),
        params=params_array,
        transforms=params_to_transform(params_array, crop_size),
        frame_size=frame_size,
        crop_size=crop_size,
        held_frames=smoother.held,
    )


def track_video(
    path: str | Path,
    fps: float,
    crop_size: int,
    smoothing: float,
    on_frame: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> TrackResult:
    """Decode `path` at constant `fps` (streamed, decode overlapped with the mesh) and track it.

    The frame order and count match `casync.media.video.iter_frames(path, fps)` exactly, so
    `transforms[k]` applies to the k-th frame of that iterator (the one `on_frame` gets k-th)."""
    info = probe_video(path)
    total = round(info.duration_s * fps) or None
    frames = prefetch(iter_frames(path, fps))
    return track_frames(frames, crop_size, smoothing, total, on_frame=on_frame, source=path)
