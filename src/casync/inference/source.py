"""The source video prepared for synthesis: face track (the preprocessing crop geometry, with the
checkpoint's smoothing), its own closed-mouth reference crop, its display rotation and, when
frames must be revisited (ping-pong, streaming), the decoded frames themselves.

Tracking is the costly step (the face mesh), and users drive one source video with many audio
clips, so a track can be cached on disk keyed by the file's content hash and every setting that
changes the crops (fps, crop size, smoothing). An unreadable cache entry is rebuilt.
"""

from __future__ import annotations

import itertools
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from casync.atomic import atomic_path
from casync.data.reference import closed_mouth_frame
from casync.face import cut_crop, track_frames
from casync.face.track import TrackResult
from casync.hashing import sha256_file
from casync.inference.frame_store import DEFAULT_RAM_BYTES, FrameStore
from casync.media.video import iter_frames, open_media, prefetch, probe_video

log = logging.getLogger(__name__)
TRACK_CACHE_VERSION = 2  # 2: smoothing in the key; reference crop, display matrix, hash stored


@dataclass
class SourceVideo:
    path: Path
    fps: float
    track: TrackResult | None  # None when the track came from the cache (landmarks not kept)
    transforms: np.ndarray  # (N, 2, 3) float32 frame -> crop
    face_found: np.ndarray  # (N,) bool
    frame_size: tuple[int, int]  # (width, height)
    sha256: str  # the file's content hash (matches a training source's `sources[].sha256`)
    reference_crop: np.ndarray  # (S, S, 3) uint8: the video's closed-mouth frame
    reference_frame: int
    display_matrix: tuple[int, ...] | None  # 9 ints (rotation metadata), None: upright
    frames: FrameStore | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.transforms)

    def iter_frames(self, count: int) -> Iterator[np.ndarray]:
        """The first `count` frames in order: from the store, else decoded (in a thread)."""
        if self.frames is not None and len(self.frames) >= count:
            return (self.frames[i] for i in range(count))
        return _take(prefetch(iter_frames(self.path, self.fps)), count)

    def random_access(self) -> FrameStore:
        """Every frame, for revisiting (ping-pong): the frames kept while tracking when they are
        all there, else one more decode into a store (bounded memory, JPEG past it)."""
        if self.frames is None or len(self.frames) < self.n_frames:
            self.close()
            self.frames = _store(self.path, self.fps, None, DEFAULT_RAM_BYTES)
        return self.frames

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


def _take(frames: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if index >= count:
            break
        yield frame
    frames.close()


def display_matrix(path: Path) -> tuple[int, ...] | None:
    """The video stream's display matrix (9 ints, as decoded frames carry it), or None when it
    has none or it is the identity. Phone videos store their rotation here."""
    with open_media(path) as container:
        for frame in container.decode(video=0):
            data = frame.side_data.get("DISPLAYMATRIX")
            if data is None:
                return None
            matrix = tuple(np.frombuffer(bytes(data), "<i4").tolist())
            return None if matrix == (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30) else matrix
    return None


def _cache_file(cache_dir: Path, digest: str, fps: float, crop_size: int, smoothing: float) -> Path:
    key = f"{digest}-{fps:g}fps-{crop_size}px-s{smoothing:g}-v{TRACK_CACHE_VERSION}"
    return cache_dir / f"{key}.npz"


def _save_track(file: Path, source: SourceVideo) -> None:
    with atomic_path(file, suffix=".npz") as tmp:
        np.savez(
            tmp,
            transforms=source.transforms,
            face_found=source.face_found,
            frame_size=np.array(source.frame_size),
            reference_crop=source.reference_crop,
            reference_frame=np.array(source.reference_frame),
            display_matrix=np.array(source.display_matrix or (), np.int64),
        )


def _load_track(file: Path) -> dict | None:
    """The cached arrays, or None (with a warning naming the file) when it cannot be read: a
    truncated or corrupt entry is a miss, rebuilt by this run."""
    try:
        with np.load(file) as cached:
            return {name: cached[name] for name in cached.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        log.warning("face-track cache %s is unreadable (%s): tracking again", file, error)
        file.unlink(missing_ok=True)
        return None


def prepare_source(
    path: str | Path,
    fps: float,
    crop_size: int,
    smoothing: float,
    keep_frames: int | None = 0,
    track_cache_dir: str | Path | None = None,
    max_ram_bytes: int = DEFAULT_RAM_BYTES,
) -> SourceVideo:
    """Track the face through `path` at `fps` with the crop geometry of `crop_size` and
    `smoothing` (the checkpoint's, i.e. its cache's), decoded once, keeping its first
    `keep_frames` decoded frames for reuse (None: all of them; 0: none). With a cached track,
    frames are decoded and kept only when `keep_frames` exceeds the video (ping-pong) or is
    None (streaming).

    Raises a `MediaError` for an unreadable video, `casync.face.NoFaceError` when no frame has a face."""
    path = Path(path)
    probe_video(path)  # fail early with the media layer's clear message
    digest = sha256_file(path)
    cache_file = None
    if track_cache_dir is not None:
        cache_file = _cache_file(Path(track_cache_dir), digest, fps, crop_size, smoothing)
        cached = _load_track(cache_file) if cache_file.is_file() else None
        if cached is not None:
            source = _cached_source(path, fps, digest, cached, keep_frames, max_ram_bytes)
            warn_if_upscaled(source, crop_size)
            return source
    source = _tracked_source(path, fps, crop_size, smoothing, digest, keep_frames, max_ram_bytes)
    warn_if_upscaled(source, crop_size)
    if cache_file is not None:
        try:
            _save_track(cache_file, source)
        except OSError as error:  # a read-only or full cache folder costs the next run, not this
            log.warning(
                "face-track cache %s could not be written (%s): carrying on without it",
                cache_file, error,
            )  # fmt: skip
    return source


# A crop that enlarges the source face more than this shows a soft, blocky mouth.
MAX_UPSCALE = 2.0


def warn_if_upscaled(source: SourceVideo, crop_size: int) -> None:
    """Warn when the crop enlarges the face: the source face is small for the checkpoint."""
    transforms = source.transforms[source.face_found]
    if len(transforms) == 0:
        return
    scale = float(np.median(np.sqrt(np.abs(np.linalg.det(transforms[:, :, :2])))))
    if scale > MAX_UPSCALE:
        log.warning(
            "%s: the face is small (the %d px crop enlarges it %.1fx): the generated mouth will "
            "look soft. Use footage where the face is larger (about %d px across the crop's "
            "region or more), or a checkpoint with a smaller crop.",
            source.path, crop_size, scale, int(crop_size / MAX_UPSCALE),
        )  # fmt: skip


def _cached_source(
    path: Path, fps: float, digest: str, cached: dict, keep_frames: int | None, max_ram_bytes: int
) -> SourceVideo:
    """The source from its cached track. Without tracking there is no free decode to piggy-back
    on: frames are kept only if they will be revisited (streaming, or ping-pong past the end),
    else decoded on the fly later, overlapped with generation."""
    revisit = keep_frames is None or keep_frames > len(cached["face_found"])
    frames = _store(path, fps, keep_frames, max_ram_bytes) if revisit else None
    matrix = tuple(cached["display_matrix"].tolist()) or None
    return SourceVideo(
        path, fps, None, cached["transforms"], cached["face_found"],
        tuple(int(v) for v in cached["frame_size"]), digest, cached["reference_crop"],
        int(cached["reference_frame"]), matrix, frames,
    )  # fmt: skip


def _tracked_source(
    path: Path,
    fps: float,
    crop_size: int,
    smoothing: float,
    digest: str,
    keep_frames: int | None,
    max_ram_bytes: int,
) -> SourceVideo:
    """The source tracked in one decode, which also keeps its first `keep_frames` frames."""
    store = FrameStore(max_ram_bytes) if keep_frames != 0 else None

    def decoded() -> Iterator[np.ndarray]:
        for frame in prefetch(iter_frames(path, fps)):
            if store is not None and (keep_frames is None or len(store) < keep_frames):
                store.append(frame)
            yield frame

    track = track_frames(decoded(), crop_size, smoothing, desc="tracking face", source=path)
    frame = _reference_frame(path, track)
    return SourceVideo(
        path, fps, track, track.transforms, track.face_found, track.frame_size, digest,
        _crop_of(path, fps, store, frame, track.transforms[frame], crop_size), frame,
        display_matrix(path), store,
    )  # fmt: skip


def _reference_frame(path: Path, track: TrackResult) -> int:
    """The video's closed-mouth frame, chosen as training chooses a source's reference
    (`casync.data.reference.closed_mouth_frame`), over the whole video."""
    tracked = SimpleNamespace(id=path.name, face_found=track.face_found, landmarks=track.landmarks)
    return closed_mouth_frame(tracked, range(len(track)))


def _crop_of(path, fps, store, index: int, transform: np.ndarray, size: int) -> np.ndarray:
    if store is not None and index < len(store):
        frame = store[index]
    else:  # decode up to it: it was not kept
        frames = iter_frames(path, fps)
        frame = next(itertools.islice(frames, index, None))
        frames.close()
    return cut_crop(frame, transform, size)


def _store(path: Path, fps: float, count: int | None, max_ram_bytes: int) -> FrameStore:
    store = FrameStore(max_ram_bytes)
    frames = prefetch(iter_frames(path, fps))
    for frame in frames:
        if count is not None and len(store) >= count:
            frames.close()
            break
        store.append(frame)
    return store


def choose_reference(generator, source: SourceVideo) -> tuple[np.ndarray, str]:
    """(S, S, 3) uint8 reference for `source` under `generator` (a `LoadedGenerator`) and what
    it is: the training reference of the source this video is (same content hash), else the
    video's own closed-mouth frame, found as training finds a source's."""
    shipped = generator.reference_for(source.sha256)
    if shipped is not None:
        if shipped.source_id is None:
            return shipped.crop, "the checkpoint's one reference (format 1)"
        return shipped.crop, f"training source {shipped.source_id}"
    return source.reference_crop, f"closed-mouth frame {source.reference_frame} of the video"
