"""Test helpers: write small real media files with PyAV (bad inputs, odd frame rates)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.media.audio import load_audio
from casync.media.video import iter_frames

FPS = 25.0  # the sample clips' rate, and preprocessing's default


def write_clip(
    path: Path,
    frames: list[np.ndarray] | None,
    fps: float | Fraction = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    video_codec: str = "mpeg4",
    audio_codec: str = "aac",
) -> Path:
    """Encode RGB frames and/or mono float32 audio into `path` (container from the suffix)."""
    with av.open(str(path), "w") as container:
        video = None
        if frames is not None:
            rate = Fraction(fps).limit_denominator(1000)
            video = container.add_stream(video_codec, rate=rate)
            video.time_base = 1 / rate  # exact timestamps where the container allows it
            video.height, video.width = frames[0].shape[:2]
            video.pix_fmt = "yuv420p" if video_codec != "ffv1" else "yuv444p"
            if video_codec == "mpeg4":
                video.codec_context.qmax = 2  # near lossless, so tests can read pixel values
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=sample_rate)
            sound.layout = "mono"
        for frame in frames or []:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if video is not None:
            container.mux(video.encode())
        if sound is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for start in range(0, len(pcm), step):
                chunk = av.AudioFrame.from_ndarray(pcm[None, start : start + step], "s16", "mono")
                chunk.sample_rate, chunk.pts = sample_rate, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())
    return path


def sample_frames(path: Path, n: int | None = None) -> list[np.ndarray]:
    frames = []
    for frame in iter_frames(path, FPS):
        frames.append(frame)
        if n is not None and len(frames) == n:
            break
    return frames


def sample_audio(path: Path, seconds: float | None = None) -> np.ndarray:
    audio = load_audio(path, SAMPLE_RATE)
    return audio if seconds is None else audio[: int(seconds * SAMPLE_RATE)]
