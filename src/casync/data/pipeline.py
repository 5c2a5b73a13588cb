"""Preprocessing: source videos -> a speaker's cache (crops, mask, transforms, landmarks, audio
windows, quality report). `build_cache` validates every source first, processes only sources whose
content or settings changed, stages finished sources, and commits them with `meta.json` last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from casync.audio.frontend import AudioFrontEnd
from casync.audio.windows import cache_windows
from casync.data import av_offset
from casync.data.cache import (
    FORMAT_VERSION,
    NpyWriter,
    speaker_lock,
    validate_name,
    write_json_atomic,
)
from casync.data.source_checks import TooShortError, check_complete, check_source
from casync.face import cut_crop, region_mask, track_video
from casync.face.track import NoFaceError, TrackResult
from casync.hashing import sha256_file
from casync.media.audio import SILENCE_DBFS, frame_levels_dbfs, level_dbfs


@dataclass(frozen=True)
class PipelineSettings:
    fps: float = 25.0
    sample_rate: int = 16_000
    crop_size: int = 160
    smoothing: float = 1.5  # Gaussian sigma (frames) of the crop-box smoothing
    min_duration_s: float = 2.0
    min_face_fraction: float = 0.5
    min_audio_dbfs: float = -60.0  # a soundtrack quieter than this overall is refused
    on_truncated: str = "warn"  # warn | refuse: decoded video well short of the stated duration
    av_offset: str | float = "none"  # none (estimate, report) | auto (apply it) | frames to apply
    on_unsynced: str = "warn"  # warn | refuse: audio that follows the mouth at no lag

    def __post_init__(self) -> None:
        if self.on_truncated not in ("warn", "refuse"):
            raise ValueError(f"preprocess.on_truncated={self.on_truncated!r}: use warn or refuse")
        av_offset.check_setting(self.av_offset, self.on_unsynced)


def source_ids(paths: list[Path]) -> list[str]:
    """Directory-safe, unique ids from file stems (`talk.mp4` -> `talk`, a clash -> `talk-2`)."""
    ids: list[str] = []
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).lstrip("._-")[:56] or "source"
        candidate, n = base, 1
        while candidate in ids:
            n += 1
            candidate = f"{base}-{n}"
        ids.append(validate_name(candidate, "source id"))
    return ids


def _write_audio(
    out: Path,
    audio: np.ndarray,
    n_frames: int,
    front_end: AudioFrontEnd,
    settings: PipelineSettings,
) -> None:
    """Per-frame feature windows (N, W, D) float16, computed as inference computes them."""
    with NpyWriter(out / "audio.npy", (front_end.window, front_end.feature_dim), "float16") as w:
        for windows in cache_windows(front_end, audio, n_frames, settings.fps):
            w.append(windows.astype(np.float16))


def track_and_cut_crops(path: Path, out: Path, settings: PipelineSettings) -> TrackResult:
    """Decode, track and write crops.npy + mask.npy into `out`, in one pass over the video.

    Three things overlap: decoding (a background thread), the face mesh (this thread) and
    cutting + writing crops (a second thread); the tracker hands each frame on as soon as its
    smoothed crop box is final."""
    size = settings.crop_size
    np.save(out / "mask.npy", (region_mask(size) > 0.5).astype(np.uint8))  # the same every frame
    with (
        NpyWriter(out / "crops.npy", (size, size, 3), np.uint8) as crops,
        ThreadPoolExecutor(max_workers=1) as cutter,  # warpAffine releases the GIL
    ):
        pending: deque[Future] = deque()

        def write_crop(frame: np.ndarray, transform: np.ndarray) -> None:
            crops.append(cut_crop(frame, transform, size))

        def cut_in_background(frame: np.ndarray, transform: np.ndarray) -> None:
            pending.append(cutter.submit(write_crop, frame, transform))  # one worker: in order
            while len(pending) > 8 or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failed write; bounds the frames held

        track = track_video(path, settings.fps, size, settings.smoothing, cut_in_background)
        while pending:
            pending.popleft().result()
    return track


def process_source(
    path: Path, out: Path, front_end: AudioFrontEnd, settings: PipelineSettings
) -> dict[str, Any]:
    """Write one source's arrays and quality.json into `out` (an empty dir) -> quality report."""
    info, audio = check_source(path, settings)
    track = track_and_cut_crops(path, out, settings)
    n_frames = len(track)
    if n_frames / settings.fps < settings.min_duration_s:
        raise TooShortError(
            path,
            f"only {n_frames / settings.fps:.2f} s of video, at least {settings.min_duration_s} s "
            "is needed",
            "Give a longer clip (1-5 minutes of the speaker is typical).",
        )
    face_fraction = float(track.face_found.mean())
    if face_fraction < settings.min_face_fraction:
        raise NoFaceError(
            path,
            f"a face was found in only {face_fraction:.0%} of {n_frames} frames "
            f"(need {settings.min_face_fraction:.0%})",
            "Use footage where the speaker's face is visible and frontal most of the time.",
        )
    missing_s = check_complete(path, info, n_frames, settings)
    n_samples = round(n_frames / settings.fps * settings.sample_rate)
    audio_gap_s = (n_samples - len(audio)) / settings.sample_rate
    audio = np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio))))
    offset = av_offset.estimate_av_offset(
        track.landmarks, track.face_found, audio, settings.fps, settings.sample_rate
    )
    shift = av_offset.offset_to_apply(offset, settings.av_offset, settings.on_unsynced, path)
    audio = av_offset.shift_audio(audio, shift, settings.fps, settings.sample_rate)
    _write_audio(out, audio, n_frames, front_end, settings)
    half_window_s = front_end.window / 2 / front_end.feature_rate  # the audio window's reach
    levels = frame_levels_dbfs(audio, n_frames, settings.fps, half_window_s, settings.sample_rate)
    np.save(out / "levels_dbfs.npy", levels)
    np.save(out / "transforms.npy", track.transforms)
    np.save(out / "landmarks.npy", track.landmarks)
    np.save(out / "face_found.npy", track.face_found)
    np.save(out / "params.npy", track.params.astype(np.float32))
    report = {
        **track.report(),
        "fps": settings.fps,
        "face_fraction": face_fraction,
        "duration_used_s": n_frames / settings.fps,
        "source_duration_s": info.duration_s,
        "missing_video_s": missing_s,
        "av_offset_frames": offset.frames,
        "av_offset_confidence": offset.confidence,
        "av_follows_mouth": offset.follows,
        "av_offset_applied_frames": shift,
        "source_fps": info.source_fps,
        "frame_size": [info.width, info.height],
        "codec": info.codec,
        "audio_level_dbfs": level_dbfs(audio),
        "silent_frames": int((levels <= SILENCE_DBFS).sum()),
        "audio_peak_dbfs": float(20 * np.log10(max(float(np.abs(audio).max()), 1e-10))),
        "audio_padded_s": max(0.0, audio_gap_s),
        "audio_trimmed_s": max(0.0, -audio_gap_s),
    }
    write_json_atomic(out / "quality.json", report)
    return report


def format_report(source_id: str, report: dict) -> str:
    return (
        f"[{source_id}] {report['duration_used_s']:.2f} s used ({report['frames']} frames @ {report['fps']:g} fps "
        f"from {report['source_fps']:.2f} fps {report['codec']}); no face in "
        f"{report['frames_without_face']} frames (longest gap {report['longest_gap_frames']}: "
        f"{report['gap_handling']}); crop jitter {report['jitter_raw_px']:.2f} -> "
        f"{report['jitter_smoothed_px']:.2f} px/frame; audio {report['audio_level_dbfs']:.1f} dBFS "
        f"RMS, peak {report['audio_peak_dbfs']:.1f} dBFS; {_format_av_offset(report)}"
        + (
            f"; TRUNCATED: {report['missing_video_s']:.2f} s missing"
            if report["missing_video_s"] > 0.5
            else ""
        )
    )


def _format_av_offset(report: dict) -> str:
    confidence, applied = report["av_offset_confidence"], report["av_offset_applied_frames"]
    if confidence is None:
        return f"audio-video offset: too short to estimate, shifted by {applied:+.1f} frames"
    verdict = "" if report["av_follows_mouth"] else ": the audio does NOT follow the mouth"
    return (
        f"audio {report['av_offset_frames']:+.1f} frames off the lips (confidence "
        f"{confidence:.1f}{verdict}), shifted by {applied:+.1f}"
    )


def _settings_key(settings: PipelineSettings, audio: dict) -> str:
    # The format version is part of the key: a new format redoes every source.
    blob = json.dumps(
        {"format": FORMAT_VERSION, "settings": asdict(settings), "audio": audio}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def build_cache(
    cache_dir: str | Path,
    speaker: str,
    videos: list[str | Path],
    front_end: AudioFrontEnd,
    settings: PipelineSettings = PipelineSettings(),
    config: dict | None = None,
) -> dict[str, Any]:
    """Create or update `<cache_dir>/<speaker>` -> {"root", "speaker", "sources": {id: status}}.

    Every source is probed and its audio checked before anything is written; sources whose file
    hash and settings match the cache are skipped; finished sources of an interrupted run (kept in
    `.work/`) are reused. Any error leaves the committed cache exactly as it was."""
    validate_name(speaker)
    if not videos:
        raise ValueError(f"speaker '{speaker}' lists no videos: set speaker.videos=[...]")
    paths = [Path(video).expanduser().resolve() for video in videos]
    for path in tqdm(paths, desc="checking sources", leave=False):
        check_source(path, settings)
    root = Path(cache_dir) / speaker
    with speaker_lock(cache_dir, speaker):  # a second run at once would share .work/
        statuses = _update(root, paths, front_end, settings, config or {})
    return {"root": root, "speaker": speaker, "sources": statuses}


def _update(root: Path, paths: list[Path], front_end, settings, config: dict) -> dict[str, str]:
    """Stage every source that changed, then commit them all -> {source id: status}."""
    work = root / ".work"
    work.mkdir(parents=True, exist_ok=True)
    key = _settings_key(settings, front_end.describe())
    entries, statuses = [], {}
    try:
        for source_id, path in zip(source_ids(paths), paths, strict=True):
            statuses[source_id] = _stage_source(path, source_id, root, key, front_end, settings)
            staged, done = work / source_id, root / "sources" / source_id
            source_dir = staged if staged.is_dir() else done
            entries.append({**_read_json(source_dir / "source.json"), "path": str(path)})
    except BaseException:
        _remove_empty(work, root)
        raise
    _commit(root, entries, root.name, settings, front_end.describe(), config)
    return statuses


def _stage_source(
    path: Path, source_id: str, root: Path, key: str, front_end, settings: PipelineSettings
) -> str:
    """Make sure a finished copy of this source exists in `sources/` or `.work/` -> status."""
    digest = sha256_file(path)
    done, staged = root / "sources" / source_id, root / ".work" / source_id
    if _matches(done, digest, key):
        shutil.rmtree(staged, ignore_errors=True)  # an older run's leftover, not this file
        return "skipped (unchanged)"
    if _matches(staged, digest, key):
        return "reused (finished by an interrupted run)"
    tmp = root / ".work" / f".{source_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = process_source(path, tmp, front_end, settings)
        source = {"id": source_id, "path": str(path), "sha256": digest, "key": key}
        write_json_atomic(tmp / "source.json", {**source, "n_frames": report["frames"]})
        shutil.rmtree(staged, ignore_errors=True)
        os.replace(tmp, staged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(format_report(source_id, report))
    return "processed"


def _remove_empty(*dirs: Path) -> None:
    """Undo directories this run created, if they hold nothing (finished sources stay)."""
    for directory in dirs:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _matches(source_dir: Path, digest: str, key: str) -> bool:
    """A finished source dir made from this exact file content with these settings."""
    stored = _read_json(source_dir / "source.json")
    return stored.get("sha256") == digest and stored.get("key") == key


def _commit(root: Path, entries: list[dict], speaker: str, settings, audio: dict, config) -> None:
    """Swap staged sources in, drop sources no longer listed, write meta.json last."""
    (root / "meta.json").unlink(missing_ok=True)  # until the new meta lands, nothing reads valid
    sources, work, trash = root / "sources", root / ".work", root / f".trash-{os.getpid()}"
    sources.mkdir(exist_ok=True)
    trash.mkdir(exist_ok=True)
    for entry in entries:
        staged = work / entry["id"]
        if staged.is_dir():
            if (sources / entry["id"]).exists():
                os.replace(sources / entry["id"], trash / entry["id"])
            os.replace(staged, sources / entry["id"])
    listed = {entry["id"] for entry in entries}
    for stale in sources.iterdir():
        if stale.name not in listed:
            os.replace(stale, trash / stale.name)
    for entry in entries:
        entry["duration_s"] = entry["n_frames"] / settings.fps
        entry["frame_size"] = _read_json(sources / entry["id"] / "quality.json")["frame_size"]
    meta = {
        "format_version": FORMAT_VERSION,
        "speaker": speaker,
        "fps": settings.fps,
        "sample_rate": settings.sample_rate,
        "crop_size": settings.crop_size,
        "audio": audio,
        "settings": asdict(settings),
        "sources": entries,
        "config": config,
    }
    write_json_atomic(root / "meta.json", meta)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
