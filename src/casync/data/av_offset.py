"""A source's audio-video offset, estimated from what preprocessing already has: the mouth
opening (from the landmarks) against the speech envelope, correlated over lags of +-`MAX_LAG`
frames. Re-encoded clips often carry a delay (0.3 s is common); dubbed or unrelated audio
follows the mouth at no lag at all, and a fine-tune on either learns the lag or nothing.

Confidence is a z-score: the peak correlation against the same correlation at lags of 2 s and
more, where only chance lines the two signals up. Long, speech-rich footage scores high (20 s of
a talk: about 5, unrelated audio about 2); under `MIN_SECONDS` a match cannot be told from
chance, so no estimate is made there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from casync.data.reference import mouth_opening
from casync.media import MediaError
from casync.media.audio import frame_levels_dbfs

MAX_LAG = 15  # frames searched either way (0.6 s at 25 fps)
MIN_CONFIDENCE = 3.5  # z below this: the audio does not follow the mouth at any lag
TOLERANCE_FRAMES = 1.0  # offsets beyond this are worth a warning
_DETREND_FRAMES = 13  # ~0.5 s moving average removed: syllable-rate motion is what lines up
_CHANCE_LAG_S = 2.0
MIN_SECONDS = 15.0  # of frames with a face: 8 s of matching speech scores only ~2, like chance
SETTINGS = ("none", "auto")  # or a number of frames


class UnsyncedAudioError(MediaError):
    """The soundtrack does not follow the speaker's mouth at any lag."""


@dataclass(frozen=True)
class AVOffset:
    frames: float  # how many frames the audio is late (+) or early (-) relative to the lips
    confidence: float | None  # z-score of the peak against chance; None: too short to tell

    @property
    def follows(self) -> bool | None:
        """Whether the audio follows the mouth (at `frames`); None when too short to tell."""
        return None if self.confidence is None else self.confidence >= MIN_CONFIDENCE


def _detrended(signal: np.ndarray) -> np.ndarray:
    trend = np.convolve(signal, np.ones(_DETREND_FRAMES) / _DETREND_FRAMES, mode="same")
    return np.gradient(signal - trend)


def _unit(signal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    centred = np.where(valid, signal - signal[valid].mean(), 0.0)
    return centred / max(float(np.linalg.norm(centred)), 1e-12)


def speech_envelope(audio: np.ndarray, n_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """(n_frames,) level in dB of the 300-3000 Hz band around each frame, floored 40 dB below
    its peak (so silence is flat, not noise)."""
    band = butter(4, [300, 3000], btype="band", fs=sample_rate, output="sos")
    voice = sosfiltfilt(band, audio.astype(np.float64)) if len(audio) > 27 else audio
    levels = frame_levels_dbfs(voice, n_frames, fps, 0.5 / fps, sample_rate).astype(np.float64)
    return np.maximum(levels, levels.max() - 40.0)


def estimate_av_offset(
    landmarks: np.ndarray,
    face_found: np.ndarray,
    audio: np.ndarray,
    fps: float,
    sample_rate: int,
    max_lag: int = MAX_LAG,
) -> AVOffset:
    """The lag (in frames, sub-frame by a parabola through the peak) at which the audio envelope
    best follows the mouth opening, and its confidence; confidence None when the footage is too
    short (under `MIN_SECONDS` with a face) to tell a lag from chance."""
    n = len(face_found)
    found = np.asarray(face_found, dtype=bool)
    circular_lags = np.arange(n)
    chance = circular_lags[np.minimum(circular_lags, n - circular_lags) >= _CHANCE_LAG_S * fps]
    if found.sum() < MIN_SECONDS * fps or len(chance) < 2 * max_lag:
        return AVOffset(0.0, None)
    opening = mouth_opening(np.nan_to_num(np.asarray(landmarks, dtype=np.float64)))
    opening = np.interp(np.arange(n), np.flatnonzero(found), opening[found])  # bridge gaps
    mouth = _unit(_detrended(opening), found)
    voice = _unit(_detrended(speech_envelope(audio, n, fps, sample_rate)), np.ones(n, bool))
    # circular cross-correlation: corr[k] = sum_t mouth[t] * voice[t + k]
    corr = np.fft.irfft(np.conj(np.fft.rfft(mouth)) * np.fft.rfft(voice), n)
    lags = np.arange(-max_lag, max_lag + 1)
    near = corr[lags % n]
    best = int(np.argmax(near))
    null = corr[chance]
    confidence = float((near[best] - null.mean()) / max(float(null.std()), 1e-12))
    frames = float(lags[best])
    if 0 < best < len(lags) - 1:
        left, peak, right = near[best - 1 : best + 2]
        curvature = left - 2 * peak + right
        frames += 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return AVOffset(round(frames, 2), round(confidence, 2))


def offset_to_apply(
    estimate: AVOffset, setting: str | float, on_unsynced: str, path: Path
) -> float:
    """The frames to shift this source's audio by, per `preprocess.av_offset` (none: report only;
    auto: the estimate; a number: that many frames); warns about an offset left in place and
    about (or, with on_unsynced=refuse, refuses) audio that follows the mouth at no lag."""
    if estimate.follows is False:
        problem = (
            f"the audio does not follow the speaker's mouth at any lag within +-{MAX_LAG} frames "
            f"(confidence {estimate.confidence:.1f} < {MIN_CONFIDENCE})"
        )
        fix = (
            "Dubbed or unrelated audio, or too little speech to tell: check the clip, and drop "
            "it from speaker.videos if its sound is not the speaker's"
        )
        if on_unsynced == "refuse":
            raise UnsyncedAudioError(path, problem, fix + " (or set preprocess.on_unsynced=warn).")
        warnings.warn(f"{path}: {problem}. {fix}.", stacklevel=2)
    if setting == "none":
        if estimate.follows and abs(estimate.frames) > TOLERANCE_FRAMES:
            warnings.warn(
                f"{path}: the audio is {estimate.frames:+.1f} frames off the lips (confidence "
                f"{estimate.confidence:.1f}; + means late): set preprocess.av_offset=auto to "
                "correct it",
                stacklevel=2,
            )
        return 0.0
    if setting == "auto":
        if estimate.follows is None:
            warnings.warn(
                f"{path}: too short to estimate its audio-video offset (under {MIN_SECONDS:g} s "
                "with a face), so av_offset=auto shifts nothing: give the offset in frames instead",
                stacklevel=2,
            )
        return estimate.frames if estimate.follows else 0.0  # nothing to go by otherwise
    return float(setting)


def shift_audio(audio: np.ndarray, frames: float, fps: float, sample_rate: int) -> np.ndarray:
    """Move the soundtrack `frames` earlier (audio that is late by that much lines up), keeping
    its length: what falls off one end is padded with silence at the other."""
    shift = int(round(frames / fps * sample_rate))
    if shift == 0:
        return audio
    if shift > 0:
        return np.concatenate([audio[shift:], np.zeros(min(shift, len(audio)), audio.dtype)])
    return np.concatenate([np.zeros(min(-shift, len(audio)), audio.dtype), audio[:shift]])


def check_setting(setting: str | float, on_unsynced: str) -> None:
    if not (setting in SETTINGS or isinstance(setting, int | float)):
        raise ValueError(
            f"preprocess.av_offset={setting!r}: use none (estimate and report), auto (apply the "
            "estimate) or a number of frames the audio is late by"
        )
    if on_unsynced not in ("warn", "refuse"):
        raise ValueError(f"preprocess.on_unsynced={on_unsynced!r}: use warn or refuse")
