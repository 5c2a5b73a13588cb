"""Extraction: one source video -> its cache arrays (crops, mask, transforms, landmarks, audio
windows, levels) and quality report, written into an empty directory. `process_source` is the
whole of it; `format_report` is the report's one-line summary for the console.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from casync.audio.frontend import AudioFrontEnd
from casync.audio.windows import cache_windows
from casync.data import av_offset
from casync.data.cache import NpyWriter, write_json_atomic
from casync.data.source_checks import TooShortError, check_complete, check_source
from casync.face import cut_crop, stored_mask, track_video
from casync.face.track import NoFaceError, TrackResult
from casync.media.audio import SILENCE_DBFS, frame_levels_dbfs, level_dbfs

if TYPE_CHECKING:
    from casync.data.pipeline import PipelineSettings


def track_and_cut_crops(path: Path, out: Path, settings: PipelineSettings) -> TrackResult:
    """Decode, track and write crops.npy + mask.npy into `out`, in one pass over the video.

    Three things overlap: decoding (a background thread), the face mesh (this thread) and
    cutting + writing crops (a second thread); the tracker hands each frame on as soon as its
    smoothed crop box is final."""
    size = settings.crop_size
    np.save(out / "mask.npy", stored_mask(size))  # the same every frame
    with (
        NpyWriter(out / "crops.npy", (size, size, 3), np.uint8) as crops,
        ThreadPoolExecutor(max_workers=1) as cutter,  # warpAffine releases the GIL
    ):
        pending: deque[Future] = deque()

        def write_crop(frame: np.ndarray, transform: np.ndarray) -> None:
            crops.append(cut_crop(frame, transform, size))

        def cut_in_background(frame: np.ndarray, transform: np.ndarray) -> None:
            pending.append(cutter.submit(write_crop, frame, transform))  # one worker: in order
            while len(pending) > 8 or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failed write; bounds the frames held

        track = track_video(path, settings.fps, size, settings.smoothing, cut_in_background)
        while pending:
            pending.popleft().result()
    return track


def write_audio(
    out: Path,
    audio: np.ndarray,
    n_frames: int,
    front_end: AudioFrontEnd,
    settings: PipelineSettings,
) -> None:
    """Per-frame feature windows (N, W, D) float16 into audio.npy, computed as inference
    computes them."""
    with NpyWriter(out / "audio.npy", (front_end.window, front_end.feature_dim), "float16") as w:
        for windows in cache_windows(front_end, audio, n_frames, settings.fps):
            w.append(windows.astype(np.float16))


def _check_track(path: Path, track: TrackResult, settings: PipelineSettings) -> float:
    """Refuse a track too short or with too few faces -> the fraction of frames with a face."""
    n_frames = len(track)
    if n_frames / settings.fps < settings.min_duration_s:
        raise TooShortError(
            path,
            f"only {n_frames / settings.fps:.2f} s of video, at least {settings.min_duration_s} s "
            "is needed",
            "Give a longer clip (1-5 minutes of the speaker is typical).",
        )
    face_fraction = float(track.face_found.mean())
    if face_fraction < settings.min_face_fraction:
        raise NoFaceError(
            path,
            f"a face was found in only {face_fraction:.0%} of {n_frames} frames "
            f"(need {settings.min_face_fraction:.0%})",
            "Use footage where the speaker's face is visible and frontal most of the time.",
        )
    return face_fraction


def _fit_audio(
    audio: np.ndarray, n_frames: int, settings: PipelineSettings
) -> tuple[np.ndarray, float]:
    """Pad or trim the soundtrack to the decoded video's length -> (audio, seconds padded; a
    negative number is seconds trimmed)."""
    n_samples = round(n_frames / settings.fps * settings.sample_rate)
    gap_s = (n_samples - len(audio)) / settings.sample_rate
    return np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio)))), gap_s


def _write_track(out: Path, track: TrackResult) -> None:
    np.save(out / "transforms.npy", track.transforms)
    np.save(out / "landmarks.npy", track.landmarks)
    np.save(out / "face_found.npy", track.face_found)
    np.save(out / "params.npy", track.params.astype(np.float32))


def process_source(
    path: Path, out: Path, front_end: AudioFrontEnd, settings: PipelineSettings
) -> dict[str, Any]:
    """Write one source's arrays and quality.json into `out` (an empty dir) -> quality report."""
    info, audio = check_source(path, settings)
    track = track_and_cut_crops(path, out, settings)
    face_fraction = _check_track(path, track, settings)
    n_frames = len(track)
    missing_s = check_complete(path, info, n_frames, settings)
    audio, audio_gap_s = _fit_audio(audio, n_frames, settings)
    fps, rate = settings.fps, settings.sample_rate
    offset = av_offset.estimate_av_offset(track.landmarks, track.face_found, audio, fps, rate)
    shift = av_offset.offset_to_apply(offset, settings.av_offset, settings.on_unsynced, path)
    audio = av_offset.shift_audio(audio, shift, fps, rate)
    write_audio(out, audio, n_frames, front_end, settings)
    half_window_s = front_end.window / 2 / front_end.feature_rate  # the audio window's reach
    levels = frame_levels_dbfs(audio, n_frames, fps, half_window_s, rate)
    np.save(out / "levels_dbfs.npy", levels)
    _write_track(out, track)
    report = {
        **track.report(),
        "fps": fps,
        "face_fraction": face_fraction,
        "duration_used_s": n_frames / fps,
        "source_duration_s": info.duration_s,
        "missing_video_s": missing_s,
        "av_offset_frames": offset.frames,
        "av_offset_confidence": offset.confidence,
        "av_follows_mouth": offset.follows,
        "av_offset_applied_frames": shift,
        "source_fps": info.source_fps,
        "frame_size": [info.width, info.height],
        "codec": info.codec,
        "audio_level_dbfs": level_dbfs(audio),
        "silent_frames": int((levels <= SILENCE_DBFS).sum()),
        "audio_peak_dbfs": float(20 * np.log10(max(float(np.abs(audio).max()), 1e-10))),
        "audio_padded_s": max(0.0, audio_gap_s),
        "audio_trimmed_s": max(0.0, -audio_gap_s),
    }
    write_json_atomic(out / "quality.json", report)
    return report


def format_report(source_id: str, report: dict) -> str:
    """The quality report as one console line."""
    return (
        f"[{source_id}] {report['duration_used_s']:.2f} s used ({report['frames']} frames @ {report['fps']:g} fps "
        f"from {report['source_fps']:.2f} fps {report['codec']}); no face in "
        f"{report['frames_without_face']} frames (longest gap {report['longest_gap_frames']}: "
        f"{report['gap_handling']}); crop jitter {report['jitter_raw_px']:.2f} -> "
        f"{report['jitter_smoothed_px']:.2f} px/frame; audio {report['audio_level_dbfs']:.1f} dBFS "
        f"RMS, peak {report['audio_peak_dbfs']:.1f} dBFS; {_format_av_offset(report)}"
        + (
            f"; TRUNCATED: {report['missing_video_s']:.2f} s missing"
            if report["missing_video_s"] > 0.5
            else ""
        )
    )


def _format_av_offset(report: dict) -> str:
    confidence, applied = report["av_offset_confidence"], report["av_offset_applied_frames"]
    if confidence is None:
        return f"audio-video offset: too short to estimate, shifted by {applied:+.1f} frames"
    verdict = "" if report["av_follows_mouth"] else ": the audio does NOT follow the mouth"
    return (
        f"audio {report['av_offset_frames']:+.1f} frames off the lips (confidence "
        f"{confidence:.1f}{verdict}), shifted by {applied:+.1f}"
    )
