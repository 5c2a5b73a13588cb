"""Media steps of the demo: trim inputs (quick mode) and put the source beside the lip-synced
result, frame by frame, with the driving audio."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from casync.atomic import atomic_path
from casync.audio.frontend import SAMPLE_RATE

SIDE_AUDIO_RATE = 44_100


def trim_video(source: Path, output: Path, seconds: float, fps: float) -> Path:
    """The first `seconds` of `source` (frames and soundtrack) as an H.264/AAC MP4."""
    from casync.media.audio import load_audio
    from casync.media.video import iter_frames
    from casync.media.writer import VideoWriter

    frames = itertools.islice(iter_frames(source, fps), round(seconds * fps))
    first = next(frames)
    audio = load_audio(source, SAMPLE_RATE)
    height, width = first.shape[:2]
    with VideoWriter(output, fps, width, height, audio, SAMPLE_RATE) as writer:
        for frame in itertools.chain([first], frames):
            writer.write(frame)
    return output


def trim_audio(source: Path, output: Path, seconds: float) -> Path:
    """The first `seconds` of `source` as 16 kHz mono WAV, written atomically."""
    import soundfile

    from casync.media.audio import load_audio

    audio = load_audio(source, SAMPLE_RATE)[: round(seconds * SAMPLE_RATE)]
    with atomic_path(output, suffix=".wav") as tmp:
        soundfile.write(tmp, audio, SAMPLE_RATE)
    return output


def labelled(frame: np.ndarray, text: str) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    scale = max(frame.shape[0] / 720, 0.4)
    origin = (int(12 * scale), int(36 * scale))
    for color, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness + 1)
    return frame


def source_schedule(video: Path, n_out: int, fps: float) -> Iterator[np.ndarray]:
    """The source frame shown at each output frame (the synthesizer's ping-pong schedule):
    streamed when the source is at least as long as the output, else held (it is the short one)."""
    from casync.inference import ping_pong
    from casync.media.video import iter_frames

    n_source = sum(1 for _ in itertools.islice(iter_frames(video, fps), n_out))  # capped
    if n_source >= n_out:
        yield from itertools.islice(iter_frames(video, fps), n_out)
        return
    held = list(iter_frames(video, fps))
    for index in ping_pong(n_out, len(held)):
        yield held[index]


def side_by_side(
    source: Path, generated: Path, audio: Path, output: Path, n_out: int, fps: float
) -> Path:
    """source | generated (its first `n_out` frames), frame by frame, with the driving audio."""
    from casync.media.audio import load_audio
    from casync.media.video import iter_frames
    from casync.media.writer import VideoWriter

    pairs = zip(source_schedule(source, n_out, fps), iter_frames(generated, fps), strict=False)
    writer = None
    try:
        for left, right in pairs:
            height = min(left.shape[0], right.shape[0])
            if left.shape[0] != height:
                left = cv2.resize(left, (round(left.shape[1] * height / left.shape[0]), height))
            if right.shape[0] != height:
                right = cv2.resize(right, (round(right.shape[1] * height / right.shape[0]), height))
            frame = np.hstack([labelled(left, "source"), labelled(right, "CASync")])
            if writer is None:
                sound = load_audio(audio, SIDE_AUDIO_RATE)
                writer = VideoWriter(
                    output, fps, frame.shape[1], frame.shape[0], sound, SIDE_AUDIO_RATE
                )
            writer.write(frame)
        if writer is None:
            raise ValueError(f"{generated}: no frames to put side by side")
        return writer.close()
    except BaseException:
        if writer is not None:
            writer._abort()
        raise
