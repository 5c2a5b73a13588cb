"""Write RGB frames as H.264 (yuv420p) MP4 with an AAC soundtrack, via PyAV (bundled FFmpeg).

The file appears atomically (written beside the target, renamed on success), so a failed run never
leaves a truncated MP4 behind. Odd frame sizes lose their last row/column (yuv420p needs even
dimensions). The soundtrack is cut to the video's duration: AAC pads its last frame with silence,
so a muxed stream would otherwise run up to 1024 samples long. A display matrix (a phone video's
rotation) can be carried over, so the output plays the way its source does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from casync.atomic import DiskFullError, temp_beside

AAC_FRAME = 1024  # samples per AAC frame
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
    "placebo",
)  # fmt: skip


class OutputNotWritableError(ValueError):
    """The output path cannot be written (missing folder, no permission, wrong extension)."""


def check_writable(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fail fast, before any heavy work, if `path` cannot receive an MP4 or is one of `inputs`
    (the same file, through symlinks or hard links: writing it would destroy the input)."""
    path = Path(path)
    for source in inputs:
        if _same_file(path, source):
            raise OutputNotWritableError(
                f"output '{path}' is the input '{source}': writing it would destroy the input. "
                "Give another output=... path"
            )
    if path.suffix.lower() not in {".mp4", ".mov", ".m4v"}:
        raise OutputNotWritableError(
            f"output '{path}': expected an .mp4 (or .mov/.m4v) path, got '{path.suffix or 'none'}'"
        )
    if path.is_dir():
        raise OutputNotWritableError(f"output '{path}' is a folder: give a file name ending .mp4")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputNotWritableError(
            f"output '{path}': folder '{folder}' does not exist. Create it first."
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputNotWritableError(
            f"output '{path}': cannot write into '{folder}' ({error.strerror or error})"
        ) from error
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputNotWritableError(f"output '{path}' exists and is read-only")
    return path


def _same_file(a: Path, b: str | Path) -> bool:
    if isinstance(b, np.ndarray):  # an in-memory waveform is no file
        return False
    b = Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


class VideoWriter:
    """`write(frame)` RGB uint8 (H, W, 3) frames at `fps`; `close()` muxes `audio` (mono or
    (N, channels) float32 in [-1, 1] at `sample_rate`, required with it), trimmed to the
    video's duration."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        audio_bitrate: int = 128_000,
        display_matrix: Sequence[int] | None = None,
    ) -> None:
        self.path = check_writable(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ValueError(f"frame size {width}x{height} is too small to encode")
        if audio is not None and sample_rate is None:
            raise ValueError(f"{path}: audio to mux needs its sample_rate")
        self.audio = None if audio is None else np.asarray(audio, np.float32)
        self.sample_rate = sample_rate
        self.frames_written = 0
        self._tmp = temp_beside(self.path, self.path.suffix)  # a killed run's temp goes first
        try:  # a failure (or SIGTERM) from here on must not leave the temp behind
            self._open(crf, preset, audio_bitrate, display_matrix)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def _open(self, crf: int, preset: str, audio_bitrate: int, display_matrix) -> None:
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height = self.width, self.height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": preset}
        if display_matrix is not None:
            self._video.set_display_matrix(list(display_matrix))
        self._audio_stream = None
        if self.audio is not None:
            layout = "mono" if self.audio.ndim == 1 else "stereo"
            self._audio_stream = self._container.add_stream("aac", rate=self.sample_rate)
            self._audio_stream.layout = layout
            self._audio_stream.bit_rate = audio_bitrate

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame[: self.height, : self.width])
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        with self._naming_a_full_disk():
            self._container.mux(self._video.encode(video_frame))
        self.frames_written += 1

    @contextlib.contextmanager
    def _naming_a_full_disk(self):
        try:
            yield
        except OSError as error:
            if error.errno == errno.ENOSPC and not isinstance(error, DiskFullError):
                raise DiskFullError(self.path) from error
            raise

    def _mux_audio(self) -> None:
        duration = self.frames_written / self.fps
        samples = self.audio[: int(round(duration * self.sample_rate))]
        planar = samples[None] if samples.ndim == 1 else samples.T  # (channels, N)
        planar = np.ascontiguousarray(planar, dtype=np.float32)
        for start in range(0, planar.shape[1], AAC_FRAME):
            chunk = planar[:, start : start + AAC_FRAME]
            frame = av.AudioFrame.from_ndarray(
                chunk, format="fltp", layout=self._audio_stream.layout
            )
            frame.sample_rate = self.sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, self.sample_rate)
            self._container.mux(self._audio_stream.encode(frame))
        self._container.mux(self._audio_stream.encode(None))

    def close(self) -> Path:
        """Flush encoders, mux the audio, and move the file into place. Returns the path."""
        try:
            if self.frames_written == 0:
                raise ValueError(f"no frames were written to '{self.path}'")
            with self._naming_a_full_disk():
                self._container.mux(self._video.encode(None))
                if self._audio_stream is not None:
                    self._mux_audio()
                self._container.close()
            os.replace(self._tmp, self.path)
        finally:
            self._abort()
        return self.path

    def _abort(self) -> None:
        if self._tmp.exists():
            with contextlib.suppress(Exception):  # closed already or broken: delete it anyway
                self._container.close()
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
