"""Decode any common container/codec to RGB frames at a constant frame rate, streamed.

Constant-fps resampling is done by presentation timestamps, not by frame counting, so variable or
odd rates (22.13 fps, 30 fps) and containers with broken frame counts (MPEG-1) come out right:
output frame k shows the last source frame displayed at time (k + 0.5) / fps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from casync.media import (
    MediaFileNotFoundError,
    NoVideoStreamError,
    UnreadableMediaError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    source_fps: float
    duration_s: float  # container/stream estimate; decode for the exact frame count
    has_audio: bool
    codec: str


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open a container, turning every failure into a specific `MediaError`."""
    path = Path(path)
    if not path.is_file():
        raise MediaFileNotFoundError(
            path, "file not found", "Check the path in the speaker config."
        )
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise UnreadableMediaError(
            path,
            f"not a readable media file ({error})",
            "Re-export it as MP4 (H.264 + AAC) or check that the file is not truncated.",
        ) from error


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    if not container.streams.video:
        raise NoVideoStreamError(
            path, "no video stream", "Give a video of the speaker's face, not an audio-only file."
        )
    return container.streams.video[0]


def probe_video(path: str | Path) -> VideoInfo:
    """Read the container header (no full decode) -> `VideoInfo`."""
    path = Path(path)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or 25
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        return VideoInfo(
            path=path,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            source_fps=float(rate),
            duration_s=duration,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )


def _decoded(path: Path) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """(time relative to the first frame, display duration, frame) in presentation order."""
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        default_duration = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        start = None
        last = -default_duration
        try:
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else last + default_duration
                start = time if start is None else start
                last = time
                yield time - start, default_duration, frame
        except av.FFmpegError as error:
            raise UnreadableMediaError(
                path, f"video decoding failed after {last:.2f} s ({error})", "Re-export the file."
            ) from error


def iter_frames(path: str | Path, fps: float) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames at a constant `fps`, one decoded frame held at a time.

    Output frame k (centred at (k + 0.5) / fps) is the last source frame whose timestamp is not
    after that centre; the stream ends at the last frame's time plus its display duration."""
    path = Path(path)
    held: np.ndarray | None = None
    k = 0
    end = 0.0
    for time, duration, frame in _decoded(path):
        while held is not None and (k + 0.5) / fps < time - 1e-6:  # a tie shows the newer frame
            yield held
            k += 1
        held = frame.to_ndarray(format="rgb24")
        end = time + duration
    if held is None:
        raise UnreadableMediaError(
            path, "the video stream has no decodable frames", "Re-export it."
        )
    while (k + 0.5) / fps < end:
        yield held
        k += 1


def prefetch(items: Iterable[T], maxsize: int = 8) -> Iterator[T]:
    """Run `items` in a background thread (decoding releases the GIL) and yield from a queue.

    Exceptions from the producer are re-raised in the consumer; closing the generator early stops
    the producer."""
    buffer: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as error:  # handed to the consumer
            buffer.put((done, error))
        finally:
            if hasattr(iterator, "close"):
                iterator.close()  # releases the container when the consumer stops early

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
