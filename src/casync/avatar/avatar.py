"""`Avatar`: everything about one source video that does not depend on the driving audio,
computed in one decode pass and kept as a versioned folder, keyed to the checkpoint it was
prepared for.

The pass: decode -> track (fixed lag) -> crop -> store. Each frame, once its smoothed crop box
is final, is written to the frame stream and its crop to the lossless crop file
(`casync.avatar.frames`); nothing is decoded twice and no more than the tracker's lag is held in
memory. Then the reference (the closed-mouth frame, as training chooses it) and the idle loop
(`casync.avatar.idle`) are chosen from the track, and `avatar.json` is written last: a folder
without it, or with another format, checkpoint or source, is never used silently.

Folder layout (format `FORMAT_VERSION`): avatar.json (settings, keys, idle loop, report),
frames.mp4, crops.png + crops.index.npy, transforms.npy, face_found.npy, opening.npy.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casync.avatar.frames import CropStore, CropWriter, FrameReader, FrameWriter
from casync.avatar.idle import IdleLoop, choose_idle, cuts, head_motion, user_idle
from casync.contract import LoadedGenerator
from casync.data.cache import validate_name
from casync.data.reference import closed_mouth_frame
from casync.face import cut_crop, track_frames
from casync.face.lips import mouth_opening
from casync.hashing import sha256_file
from casync.media.audio import SILENCE_DBFS, frame_levels_dbfs, load_audio
from casync.media.video import iter_frames, prefetch, probe_video

log = logging.getLogger(__name__)
FORMAT_VERSION = 3  # 2: the idle loop says whether it is quiet; 3: PNG crops
ARRAYS = ("transforms", "face_found", "opening")
NOISE_MARGIN_DB = 10.0  # speech is this far above the recording's noise floor


class AvatarError(ValueError):
    """An avatar folder that is missing, incomplete, or prepared for something else."""


@dataclass
class Avatar:
    """A prepared source: the attributes `Synthesizer.render` reads from a source video."""

    folder: Path
    path: Path  # the source video it was prepared from
    fps: float
    crop_size: int
    frame_size: tuple[int, int]  # (width, height)
    transforms: np.ndarray  # (N, 2, 3) float32 frame -> crop
    face_found: np.ndarray  # (N,) bool
    sha256: str  # the source video's content hash
    reference_crop: np.ndarray  # (S, S, 3) uint8: the video's closed-mouth frame
    reference_frame: int
    display_matrix: tuple[int, ...] | None
    idle: IdleLoop
    frames: FrameReader  # random access to the stored frames
    crops: CropStore  # (N, S, S, 3) uint8 by index, lossless (PNG)
    meta: dict
    track = None  # landmarks are not kept (`SourceVideo` compatibility)

    @property
    def n_frames(self) -> int:
        return len(self.transforms)

    @property
    def idle_range(self) -> tuple[int, int]:
        return self.idle.start, self.idle.stop

    def crop(self, index: int) -> np.ndarray:
        return self.crops[index]  # decoded: a fresh array

    def iter_frames(self, count: int):
        return (self.frames[i] for i in range(count))

    def random_access(self) -> FrameReader:
        return self.frames

    def close(self) -> None:
        self.frames.close()
        self.crops.close()


def checkpoint_key(generator: LoadedGenerator) -> str:
    """The content hash of the checkpoint file `generator` was read from."""
    if generator.path is None:
        raise AvatarError("an avatar is keyed to a checkpoint file: load the generator from one")
    stat = Path(generator.path).stat()
    return _file_key(str(Path(generator.path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_key(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, hashed once per (path, size, mtime): a paper-size checkpoint is 80 MB."""
    return sha256_file(path)


def cached_avatar(video: str | Path, generator: LoadedGenerator, root: str | Path) -> Avatar:
    """The avatar of `video` for `generator` under `root` (named by both contents), prepared
    on the first call and loaded on every later one; a stale one is prepared again."""
    video = Path(video)
    stat = video.stat()
    name = f"{_file_key(str(video.resolve()), stat.st_size, stat.st_mtime_ns)[:16]}-"
    folder = Path(root) / f"{name}{checkpoint_key(generator)[:16]}"
    if (folder / "avatar.json").is_file():
        try:
            return load_avatar(folder, generator)
        except AvatarError as error:
            log.warning("%s: preparing it again", error)
    return prepare_avatar(video, generator, folder)


def prepare_avatar(
    video: str | Path,
    generator: LoadedGenerator,
    folder: str | Path,
    idle_s: tuple[float, float] | None = None,
    idle_seconds: float | None = None,
) -> Avatar:
    """Decode, track and store `video` once into `folder` (replaced atomically when it exists),
    for `generator`'s crop geometry; `idle_s` = (start_s, stop_s) overrides the idle loop."""
    video, folder = Path(video), Path(folder)
    validate_name(folder.name, "avatar name")
    info = probe_video(video)
    stat = video.stat()
    source = {"path": str(video.resolve()), "sha256": sha256_file(video),
              "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.pid{os.getpid()}.", dir=folder.parent))
    try:
        meta = _write_folder(work, video, generator, info, idle_s, idle_seconds)
        meta |= {"format": FORMAT_VERSION, "checkpoint_sha256": checkpoint_key(generator),
                 "checkpoint": str(generator.path), "source": source}  # fmt: skip
        (work / "avatar.json").write_text(json.dumps(meta, indent=2))
        _swap_in(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "avatar %s: idle loop %.2f-%.2f s (%s)",
        folder,
        *meta["idle"]["seconds"],
        meta["idle"]["reason"],
    )
    return load_avatar(folder, generator)


def _write_folder(work: Path, video: Path, generator, info, idle_s, idle_seconds) -> dict:
    fps, size = generator.fps, generator.crop_size
    frames = FrameWriter(work / "frames.mp4", fps, info.width, info.height)
    crops = CropWriter(work / "crops.png")

    change, previous = [], None  # mean crop change into each frame: a cut shows as a spike

    def store(frame: np.ndarray, transform: np.ndarray) -> None:
        nonlocal previous
        crop = cut_crop(frame, transform, size)
        frames.write(frame)
        crops.write(crop)
        small = crop[::4, ::4].astype(np.int16)
        change.append(0.0 if previous is None else float(np.abs(small - previous).mean()))
        previous = small

    try:
        total = round(info.duration_s * fps) or None
        track = track_frames(
            prefetch(iter_frames(video, fps)), size, generator.smoothing, total,
            desc="preparing avatar", on_frame=store, source=video,
        )  # fmt: skip
    finally:
        frames.close()
        crops.close()
    n = len(track)
    opening = mouth_opening(track.landmarks)
    np.save(work / "transforms.npy", track.transforms.astype(np.float32))
    np.save(work / "face_found.npy", track.face_found)
    np.save(work / "opening.npy", opening.astype(np.float32))
    reference = _closed_mouth(video, track)
    idle = (
        user_idle(idle_s, n, fps)
        if idle_s is not None
        else choose_idle(
            _speech(video, n, fps, generator), opening, head_motion(track.params),
            track.face_found, fps, idle_seconds or 3.0, cuts(np.array(change)),
        )
    )  # fmt: skip
    from casync.inference.source import display_matrix

    matrix = display_matrix(video)
    return {
        "fps": fps, "crop_size": size, "smoothing": generator.smoothing,
        "frame_size": list(track.frame_size), "n_frames": n, "reference_frame": reference,
        "display_matrix": list(matrix) if matrix else None,
        "idle": idle.to_json() | {"seconds": list(idle.seconds)},
        "faceless_frames": int((~track.face_found).sum()),
    }  # fmt: skip


def _closed_mouth(video: Path, track) -> int:
    from types import SimpleNamespace

    tracked = SimpleNamespace(id=video.name, face_found=track.face_found, landmarks=track.landmarks)
    return closed_mouth_frame(tracked, range(len(track)))


def _speech(video: Path, n: int, fps: float, generator) -> np.ndarray:
    """(n,) bool: the source's own audio is above the silence threshold around each frame
    (all False for a video without sound). The threshold is `SILENCE_DBFS`, raised to the
    recording's noise floor (its 10th percentile level) + 10 dB for a noisy room: GRID's
    floor is -41 dBFS, so -45 dBFS would call every frame speech."""
    from casync.media import NoAudioStreamError

    try:
        audio = load_audio(video, generator.sample_rate)
    except NoAudioStreamError:
        return np.zeros(n, bool)
    half_window_s = 0.1  # the 0.2 s audio window of a frame
    levels = frame_levels_dbfs(audio, n, fps, half_window_s, generator.sample_rate)
    return levels > max(SILENCE_DBFS, float(np.percentile(levels, 10)) + NOISE_MARGIN_DB)


def _swap_in(work: Path, folder: Path) -> None:
    """Put the finished `work` folder at `folder`; an old avatar there is removed only after."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
        os.replace(folder, old)
        os.replace(work, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, folder)


def load_avatar(folder: str | Path, generator: LoadedGenerator) -> Avatar:
    """The avatar in `folder`, checked against `generator`'s checkpoint and its own source;
    AvatarError (naming both files) when it was prepared for another checkpoint, by another
    format, or from a source that has since been edited, or when its files do not agree."""
    meta = read_meta(folder)
    try:
        check_fresh(folder, meta, generator)
        return _opened(Path(folder), meta)
    except (KeyError, TypeError, ValueError, OSError) as error:
        if isinstance(error, AvatarError):
            raise
        raise AvatarError(
            f"avatar '{folder}': its files are not a CASync avatar's ({type(error).__name__}: "
            f"{error}): prepare it again with python -m casync.avatar"
        ) from None


def _opened(folder: Path, meta: dict) -> Avatar:
    """The avatar of a checked `avatar.json`: its arrays must agree with it."""
    n, size = int(meta["n_frames"]), int(meta["crop_size"])
    arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS}  # no pickles
    idle = meta["idle"]
    start, stop, reference = int(idle["start"]), int(idle["stop"]), int(meta["reference_frame"])
    in_range = 0 <= start < stop <= n and 0 <= reference < n
    if any(len(a) != n for a in arrays.values()) or not in_range:
        raise ValueError(f"avatar.json says {n} frames; its arrays, idle loop or reference do not")
    crops = CropStore(folder / "crops.png", n, size)
    return Avatar(
        folder=folder, path=Path(str(meta["source"]["path"])), fps=float(meta["fps"]),
        crop_size=size, frame_size=tuple(int(v) for v in meta["frame_size"]),
        transforms=arrays["transforms"], face_found=arrays["face_found"].astype(bool),
        sha256=str(meta["source"]["sha256"]), reference_crop=np.array(crops[reference]),
        reference_frame=reference,
        display_matrix=tuple(int(v) for v in meta["display_matrix"]) if meta["display_matrix"] else None,
        idle=IdleLoop(start, stop, float(idle["fps"]), str(idle["reason"]), idle["quiet"] is True),
        frames=FrameReader(folder / "frames.mp4", n), crops=crops, meta=meta,
    )  # fmt: skip


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / "avatar.json"
    if not path.is_file():
        raise AvatarError(
            f"avatar '{folder}' is not a prepared avatar (no avatar.json; an interrupted "
            "preparation?): python -m casync.avatar checkpoint=... video=... output=...".replace(
                "output=...", f"output={folder}"
            )
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise AvatarError(f"avatar '{folder}': avatar.json is unreadable ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise AvatarError(
            f"avatar '{folder}' has format {found}; this CASync reads format {FORMAT_VERSION}: "
            "prepare it again with python -m casync.avatar"
        )
    return meta


def check_fresh(folder: str | Path, meta: dict, generator: LoadedGenerator) -> None:
    """AvatarError unless `meta` was prepared for this checkpoint from the source as it is."""
    if meta["checkpoint_sha256"] != checkpoint_key(generator):
        raise AvatarError(
            f"avatar '{folder}' was prepared for checkpoint '{meta['checkpoint']}', not "
            f"'{generator.path}' (another file content): prepare it again for this checkpoint"
        )
    source = meta["source"]
    path = Path(source["path"])
    if path.is_file():
        stat = path.stat()
        same_file = (stat.st_size, stat.st_mtime_ns) == (source["size"], source["mtime_ns"])
        if not same_file and sha256_file(path) != source["sha256"]:
            raise AvatarError(
                f"avatar '{folder}': its source '{path}' has been edited since it was prepared: "
                "prepare it again"
            )
