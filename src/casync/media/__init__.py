"""Media decoding: any common video to constant-fps RGB frames, audio to 16 kHz mono float32.

Every decoding problem raises a subclass of `MediaError` (a `ValueError`) whose message names the
file, what is wrong and what to do. `media/writer.py` (encoding/muxing) is owned by inference.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """A media file cannot be used; the message names the file and the fix."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}. {fix}")


class MediaFileNotFoundError(MediaError):
    """The path does not exist or is not a file."""


class UnreadableMediaError(MediaError):
    """The file exists but no container/codec could decode it."""


class NoVideoStreamError(MediaError):
    """The container has no video stream."""


class NoAudioStreamError(MediaError):
    """The container has no audio stream."""


class SilentAudioError(MediaError):
    """The audio stream is (nearly) digital silence."""


__all__ = [
    "MediaError",
    "MediaFileNotFoundError",
    "NoAudioStreamError",
    "NoVideoStreamError",
    "SilentAudioError",
    "UnreadableMediaError",
]
