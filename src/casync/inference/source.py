"""The source video prepared for synthesis: face track (the preprocessing crop geometry) and,
when frames must be revisited (ping-pong, streaming), the decoded frames themselves.

Tracking is the costly step (the face mesh), and users drive one source video with many audio
clips, so a track can be cached on disk keyed by the file's content hash.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casync.atomic import atomic_path
from casync.face import track_frames
from casync.face.track import TrackResult
from casync.media.video import iter_frames, prefetch, probe_video

TRACK_CACHE_VERSION = 1


class NoFaceError(ValueError):
    """The source video shows no face the tracker can find."""


class FrameStore:
    """Append-only frames with random access: in memory up to `max_ram_bytes`, then spilled to a
    temporary raw file read back through a memory map (a long 1080p source does not fit RAM)."""

    def __init__(self, max_ram_bytes: int = 2 << 30) -> None:
        self.max_ram_bytes = max_ram_bytes
        self._ram: list[np.ndarray] = []
        self._ram_bytes = 0
        self._file = None
        self._shape: tuple[int, ...] | None = None
        self._on_disk = 0
        self._map: np.ndarray | None = None

    def append(self, frame: np.ndarray) -> None:
        self._shape = self._shape or frame.shape
        if self._file is None and self._ram_bytes + frame.nbytes <= self.max_ram_bytes:
            self._ram.append(frame)
            self._ram_bytes += frame.nbytes
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="casync-frames-")  # noqa: SIM115 (closed in close())
        self._file.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        self._on_disk += 1
        self._map = None

    def __len__(self) -> int:
        return len(self._ram) + self._on_disk

    def __getitem__(self, index: int) -> np.ndarray:
        if index < len(self._ram):
            return self._ram[index]
        if self._map is None:
            self._file.flush()
            self._map = np.memmap(
                self._file, np.uint8, mode="r", shape=(self._on_disk, *self._shape)
            )
        return self._map[index - len(self._ram)]

    def close(self) -> None:
        self._ram.clear()
        self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class SourceVideo:
    path: Path
    fps: float
    track: TrackResult | None  # None when the track came from the cache (landmarks not kept)
    transforms: np.ndarray  # (N, 2, 3) float32 frame -> crop
    face_found: np.ndarray  # (N,) bool
    frame_size: tuple[int, int]  # (width, height)
    frames: FrameStore | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.transforms)

    def iter_frames(self, count: int) -> Iterator[np.ndarray]:
        """The first `count` frames in order: from the store, else decoded (in a thread)."""
        if self.frames is not None and len(self.frames) >= count:
            return (self.frames[i] for i in range(count))
        return _take(prefetch(iter_frames(self.path, self.fps)), count)

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


def _take(frames: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if index >= count:
            break
        yield frame
    frames.close()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_file(cache_dir: Path, path: Path, fps: float, crop_size: int) -> Path:
    key = f"{_file_hash(path)}-{fps:g}fps-{crop_size}px-v{TRACK_CACHE_VERSION}"
    return cache_dir / f"{key}.npz"


def _save_track(file: Path, track: TrackResult) -> None:
    with atomic_path(file, suffix=".npz") as tmp:
        np.savez(
            tmp,
            transforms=track.transforms,
            face_found=track.face_found,
            frame_size=np.array(track.frame_size),
        )


def prepare_source(
    path: str | Path,
    fps: float = 25.0,
    crop_size: int = 160,
    keep_frames: int | None = 0,
    track_cache_dir: str | Path | None = None,
    max_ram_bytes: int = 2 << 30,
) -> SourceVideo:
    """Track the face through `path` (decoded once), keeping its first `keep_frames` decoded
    frames for reuse (None: all of them; 0: none). With a cached track, frames are decoded and
    kept only when `keep_frames` exceeds the video (ping-pong) or is None (streaming).

    Raises a `MediaError` for an unreadable video and `NoFaceError` when no frame has a face."""
    path = Path(path)
    probe_video(path)  # fail early with the media layer's clear message
    cache_file = None
    if track_cache_dir is not None:
        cache_file = _cache_file(Path(track_cache_dir), path, fps, crop_size)
        if cache_file.is_file():
            with np.load(cache_file) as cached:
                # Without tracking there is no free decode to piggy-back on: keep frames only if
                # they will be revisited (streaming, or ping-pong past the end), else decode
                # them on the fly later, overlapped with generation.
                n_cached = len(cached["face_found"])
                revisit = keep_frames is None or keep_frames > n_cached
                frames = _store(path, fps, keep_frames, max_ram_bytes) if revisit else None
                return SourceVideo(
                    path,
                    fps,
                    None,
                    cached["transforms"],
                    cached["face_found"],
                    tuple(int(v) for v in cached["frame_size"]),
                    frames,
                )
    store = FrameStore(max_ram_bytes) if keep_frames != 0 else None

    def decoded() -> Iterator[np.ndarray]:
        for frame in prefetch(iter_frames(path, fps)):
            if store is not None and (keep_frames is None or len(store) < keep_frames):
                store.append(frame)
            yield frame

    try:
        track = track_frames(decoded(), crop_size, desc="tracking face")
    except ValueError as error:
        if "no frame has a face" not in str(error):
            raise
        raise NoFaceError(
            f"{path}: no face found in any frame. Give a video in which the speaker's face is "
            "visible, roughly frontal and at least ~100 px wide."
        ) from error
    if cache_file is not None:
        _save_track(cache_file, track)
    return SourceVideo(
        path, fps, track, track.transforms, track.face_found, track.frame_size, store
    )


def _store(path: Path, fps: float, count: int | None, max_ram_bytes: int) -> FrameStore:
    store = FrameStore(max_ram_bytes)
    frames = prefetch(iter_frames(path, fps))
    for frame in frames:
        if count is not None and len(store) >= count:
            frames.close()
            break
        store.append(frame)
    return store
