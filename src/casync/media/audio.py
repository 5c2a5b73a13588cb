"""Decode any audio stream (AAC, MP2, FLAC, Vorbis, ...) to mono float32 at a given rate, streamed.

PyAV decodes, channels are averaged, soxr resamples chunk by chunk, so a long file never sits in
memory at its source rate and channel count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import soxr

from casync.media import NoAudioStreamError, UnreadableMediaError
from casync.media.video import open_media

log = logging.getLogger(__name__)


def _start_time(stream: av.stream.Stream | None) -> float:
    if stream is None or stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def load_audio(path: str | Path, sample_rate: int, align_to_video: bool = True) -> np.ndarray:
    """-> (N,) float32 mono at `sample_rate`.

    With `align_to_video`, sample 0 is the first video frame's time (the front is padded with
    silence or trimmed when the audio stream starts later/earlier than the video stream). Encoder
    padding past the stream's stated duration is cut off."""
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(
                path, "no audio stream", "Give a video with the speaker's voice on its soundtrack."
            )
        stream = container.streams.audio[0]
        source_rate = stream.codec_context.sample_rate or stream.rate
        planar = av.AudioResampler(format="fltp", rate=source_rate)  # any sample format -> float
        resampler = soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32")
        chunks, stats = [], SignalStats()
        try:
            for frame in container.decode(stream):
                for converted in planar.resample(frame):
                    channels = converted.to_ndarray()  # (C, n) float32
                    stats.add(channels, source_rate)
                    chunks.append(resampler.resample_chunk(channels.mean(axis=0, dtype=np.float32)))
        except av.FFmpegError as error:
            if not stats.samples:  # nothing decodes: not a cut-off file but a broken one
                raise UnreadableMediaError(
                    path, f"audio decoding failed ({error})", "Re-export the file."
                ) from error
            log.warning(
                "%s: audio decoding stopped at %.2f s (%s): the file is probably cut off; "
                "using the sound before it", path, stats.samples / source_rate, error,
            )  # fmt: skip
        stats.check(path, float_samples=stream.codec_context.name.startswith("pcm_f"))
        chunks.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        audio = np.concatenate(chunks).astype(np.float32, copy=False)
        if stream.duration is not None and stream.time_base is not None:
            audio = audio[: int(round(float(stream.duration * stream.time_base) * sample_rate))]
        video = container.streams.video[0] if container.streams.video else None
        if align_to_video and video is not None:
            shift = int(round((_start_time(stream) - _start_time(video)) * sample_rate))
            audio = np.pad(audio, (shift, 0)) if shift > 0 else audio[-shift:]
    if audio.size == 0:
        raise UnreadableMediaError(
            path, "the audio stream has no decodable samples", "Re-export it."
        )
    return audio


class SignalStats:
    """What decoding sees of the source samples, so that bad audio is found when it is loaded:
    non-finite samples (an error: they would fail the encoder after every frame is rendered),
    channels that cancel in the mono mix, and float samples past full scale (warnings)."""

    def __init__(self) -> None:
        self.samples = 0
        self.first_bad_s: float | None = None
        self.n_bad = 0
        self.peak = 0.0
        self.channel_energy = 0.0  # sum of squares over channels, averaged per channel
        self.mix_energy = 0.0

    def add(self, channels: np.ndarray, rate: int) -> None:
        finite = np.isfinite(channels)
        if not finite.all():
            if self.first_bad_s is None:
                self.first_bad_s = (self.samples + int(np.argmin(finite.all(axis=0)))) / rate
            self.n_bad += int((~finite).sum())
            channels = np.where(finite, channels, 0.0)
        self.samples += channels.shape[1]
        self.peak = max(self.peak, float(np.abs(channels).max(initial=0.0)))
        self.channel_energy += float(np.square(channels, dtype=np.float64).sum()) / len(channels)
        self.mix_energy += float(np.square(channels.mean(axis=0), dtype=np.float64).sum())

    def check(self, path: Path, float_samples: bool) -> None:
        """`float_samples`: the file stores floats (a float WAV), whose peaks past 1.0 are the
        file's own, not a lossy codec's overshoot."""
        if self.n_bad:
            raise UnreadableMediaError(
                path,
                f"{self.n_bad} audio samples are NaN or infinite (the first at "
                f"{self.first_bad_s:.2f} s)",
                "Re-export the audio from its source (a float WAV written by a broken step?).",
            )
        channels_db, mix_db = (
            _dbfs(e, self.samples) for e in (self.channel_energy, self.mix_energy)
        )
        if channels_db > SILENCE_DBFS and mix_db < channels_db - 20:
            log.warning(
                "%s: its channels cancel when mixed to mono (%.0f dBFS per channel, %.0f dBFS "
                "mixed: one channel phase-inverted?); the mix is near silence and the mouth will "
                "stay still. Fix the file, or keep one channel.",
                path, channels_db, mix_db,
            )  # fmt: skip
        if float_samples and self.peak > 1.0:
            log.warning(
                "%s: float samples peak at %.2f (%.1f dB past full scale); they are clipped to "
                "[-1, 1] in the output's sound. Lower its gain to keep the peaks.",
                path, self.peak, 20 * np.log10(self.peak),
            )  # fmt: skip


def _dbfs(energy: float, samples: int) -> float:
    return 20.0 * np.log10(max(np.sqrt(energy / max(samples, 1)), 1e-6))


# A video frame whose audio window (its +-window/2 span) is quieter than this is silence: inference
# holds a still, closed mouth there, and the evaluation's sync check skips it.
SILENCE_DBFS = -45.0


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def frame_levels_dbfs(
    audio: np.ndarray,
    frames: int | np.ndarray,
    fps: float,
    half_window_s: float,
    sample_rate: int,
    offset: int = 0,
) -> np.ndarray:
    """RMS level in dBFS of the audio within +-`half_window_s` of each video frame's centre: the
    span the frame's audio window covers. `frames`: a count (frames 0..n-1) or frame indices;
    `audio` may be a stretch of a longer recording that starts at sample `offset` (streaming).
    Digital silence reads -120 dBFS rather than -inf."""
    frames = np.arange(frames) if np.isscalar(frames) else np.asarray(frames)
    half = int(round(half_window_s * sample_rate))
    end = offset + len(audio)
    levels = np.empty(len(frames))
    for k, j in enumerate(frames):
        centre = int(round((j + 0.5) / fps * sample_rate))
        span = audio[max(0, centre - half - offset) : max(0, min(end, centre + half) - offset)]
        rms = float(np.sqrt(np.mean(np.square(span, dtype=np.float64)))) if span.size else 0.0
        levels[k] = 20.0 * np.log10(max(rms, 1e-6))
    return levels.astype(np.float32)
