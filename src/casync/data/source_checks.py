"""Checks on a source video before and after decoding: probe, audio stream, length, level,
and whether the whole file could be decoded. Each problem is a `MediaError` naming the file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from casync.media import MediaError, NoAudioStreamError, SilentAudioError
from casync.media.audio import level_dbfs, load_audio
from casync.media.video import VideoInfo, probe_video

if TYPE_CHECKING:
    from casync.data.pipeline import PipelineSettings


class TooShortError(MediaError):
    """The source is shorter than `min_duration_s`."""


class TruncatedError(MediaError):
    """The decoded video is well short of the duration its container states."""


TRUNCATION_TOLERANCE_S = 0.5  # or 5 % of the stated duration, whichever is more


def check_source(path: Path, settings: PipelineSettings) -> tuple[VideoInfo, np.ndarray]:
    """Cheap checks before any heavy work -> (info, 16 kHz mono audio). Raises MediaError."""
    info = probe_video(path)
    if not info.has_audio:
        raise NoAudioStreamError(
            path, "no audio stream", "Give a video with the speaker's voice on its soundtrack."
        )
    if info.duration_s and info.duration_s < settings.min_duration_s:
        raise TooShortError(
            path,
            f"only {info.duration_s:.2f} s long, at least {settings.min_duration_s} s is needed",
            "Give a longer clip (1-5 minutes of the speaker is typical).",
        )
    audio = load_audio(path, settings.sample_rate)
    if level_dbfs(audio) < settings.min_audio_dbfs:
        raise SilentAudioError(
            path,
            f"the audio is silent (level {level_dbfs(audio):.1f} dBFS < "
            f"preprocess.min_audio_dbfs={settings.min_audio_dbfs})",
            "Check that the soundtrack carries the speaker's voice.",
        )
    return info, audio


def check_complete(path: Path, info: VideoInfo, n_frames: int, settings: PipelineSettings) -> float:
    """-> seconds of video missing against the container's stated duration; warns (or, with
    on_truncated=refuse, raises TruncatedError) when that is more than the tolerance."""
    missing_s = max(0.0, info.duration_s - n_frames / settings.fps)
    if missing_s <= max(TRUNCATION_TOLERANCE_S, 0.05 * info.duration_s):
        return missing_s
    problem = (
        f"only {n_frames / settings.fps:.2f} s of video could be decoded, but the file states "
        f"{info.duration_s:.2f} s: it is probably truncated (an interrupted copy or download)"
    )
    fix = "Copy or export the file again"
    if settings.on_truncated == "refuse":
        raise TruncatedError(path, problem, fix + " (or set preprocess.on_truncated=warn).")
    warnings.warn(f"{path}: {problem}. {fix}; using the decoded part.", stacklevel=2)
    return missing_s
