"""What writing an MP4 needs beside the render loop: the driving audio at its muxing rate,
forward-only frames read as random access, and x264 encoding in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from casync.audio.frontend import SAMPLE_RATE
from casync.media.audio import load_audio
from casync.media.writer import VideoWriter


def encode(rendered: Iterable, writer: VideoWriter, total: int, progress: bool) -> tuple[int, int]:
    """Write every `RenderedFrame` to `writer` (x264 in a background thread while the next group
    renders), closing it, or aborting it on an error -> (silent frames, faceless frames)."""
    silent = faceless = 0
    with (
        BackgroundWriter(writer, queued_frames(writer.width * writer.height * 3)) as sink,
        tqdm(total=total, unit="frame", desc="lip-sync", disable=not progress) as bar,
    ):
        for frame in rendered:
            sink.put(frame.frame)
            silent += frame.silent
            faceless += not frame.face_found
            bar.update()
    return silent, faceless


QUEUE_BYTES = 256 << 20  # frames waiting for x264: a few at 4K, the most at small sizes


def queued_frames(frame_bytes: int, most: int = 32) -> int:
    """How many frames of `frame_bytes` a queue holds within `QUEUE_BYTES` (2 to `most`)."""
    return max(2, min(most, QUEUE_BYTES // max(frame_bytes, 1)))


def driving_audio(audio: str | Path | np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(16 kHz mono for the features, audio to mux, its rate). A file is muxed at up to 48 kHz
    so the soundtrack keeps its quality; an array is taken as 16 kHz mono."""
    if isinstance(audio, np.ndarray):
        waveform = np.asarray(audio, np.float32).reshape(-1)
        return waveform, waveform, SAMPLE_RATE
    import av

    waveform = load_audio(audio, SAMPLE_RATE)
    with av.open(str(audio)) as container:
        rate = int(container.streams.audio[0].rate or SAMPLE_RATE)
    rate = min(max(rate, SAMPLE_RATE), 48_000)
    mux = waveform if rate == SAMPLE_RATE else load_audio(audio, rate)
    return waveform, mux, rate


class SequentialFrames:
    """Random access over a forward-only frame iterator, for indices that only increase."""

    def __init__(self, frames: Iterator[np.ndarray]) -> None:
        self._frames, self._index, self._frame = frames, -1, None

    def get(self, index: int) -> np.ndarray:
        while self._index < index:
            self._frame = next(self._frames)
            self._index += 1
        if index != self._index:
            raise IndexError(f"frame {index} requested after frame {self._index}")
        return self._frame

    def close(self) -> None:
        if hasattr(self._frames, "close"):
            self._frames.close()


class BackgroundWriter:
    """Encode in a thread (x264 and the muxer release the GIL) while the next batch renders."""

    def __init__(self, writer: VideoWriter, maxsize: int = 32) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.writer.write(frame)
                except BaseException as error:  # surfaced in the caller's thread
                    self._error = error

    def put(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is not None or self._error is not None:
            self.writer._abort()
            if self._error is not None and exc_type is None:
                raise self._error
            return
        self.writer.close()
