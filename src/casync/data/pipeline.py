"""Preprocessing: source videos -> a speaker's cache (crops, mask, transforms, landmarks, audio
windows, quality report). `build_cache` validates every source first (`source_checks`), extracts
only sources whose content or settings changed (`extract`), stages each finished source and
commits them all with `meta.json` last (`staging`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from casync.audio.frontend import SAMPLE_RATE, AudioFrontEnd
from casync.data import av_offset, staging
from casync.data.cache import speaker_lock, validate_name, write_json_atomic
from casync.data.extract import format_report, process_source
from casync.data.source_checks import check_source
from casync.hashing import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSettings:
    """`preprocess:` of conf/preprocess.yaml, typed; the config holds the defaults."""

    fps: float
    sample_rate: int
    crop_size: int
    smoothing: float  # Gaussian sigma (frames) of the crop-box smoothing
    min_duration_s: float = 2.0
    min_face_fraction: float = 0.5
    min_audio_dbfs: float = -60.0  # a soundtrack quieter than this overall is refused
    on_truncated: str = "warn"  # warn | refuse: decoded video well short of the stated duration
    av_offset: str | float = "none"  # none (estimate, report) | auto (apply it) | frames to apply
    on_unsynced: str = "warn"  # warn | refuse: audio that follows the mouth at no lag

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"preprocess.sample_rate={self.sample_rate}: the speech front ends take "
                f"{SAMPLE_RATE} Hz audio; leave it at {SAMPLE_RATE}"
            )
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


def build_cache(
    cache_dir: str | Path,
    speaker: str,
    videos: list[str | Path],
    front_end: AudioFrontEnd,
    settings: PipelineSettings,
    config: dict | None = None,
) -> dict[str, Any]:
    """Create or update `<cache_dir>/<speaker>` -> {"root", "speaker", "sources": {id: status}}.

    Every source is probed and its audio checked before anything is written; sources whose file
    hash and settings match the cache are skipped; finished sources of an interrupted run (kept in
    `.work/`) are reused. Any error leaves the committed cache exactly as it was."""
    validate_name(speaker)
    if not videos:
        raise ValueError(f"speaker '{speaker}' lists no videos: set speaker.videos=[...]")
    paths = unique_paths([Path(video).expanduser().resolve() for video in videos], speaker)
    for path in tqdm(paths, desc="checking sources", leave=False):
        check_source(path, settings)
    root = Path(cache_dir) / speaker
    with speaker_lock(cache_dir, speaker):  # a second run at once would share .work/
        statuses = _update(root, paths, front_end, settings, config or {})
    return {"root": root, "speaker": speaker, "sources": statuses}


def unique_paths(paths: list[Path], speaker: str) -> list[Path]:
    """Each video once: a video listed twice would weigh double in training (warned)."""
    unique = list(dict.fromkeys(paths))
    for path in {p for p in paths if paths.count(p) > 1}:
        log.warning(
            "speaker '%s' lists %s %d times: it is used once", speaker, path, paths.count(path)
        )
    return unique


def _update(
    root: Path,
    paths: list[Path],
    front_end: AudioFrontEnd,
    settings: PipelineSettings,
    config: dict,
) -> dict[str, str]:
    """Stage every source that changed, then commit them all -> {source id: status}."""
    work = root / ".work"
    work.mkdir(parents=True, exist_ok=True)
    key = staging.settings_key(settings, front_end.describe())
    entries, statuses = [], {}
    try:
        for source_id, path in zip(source_ids(paths), paths, strict=True):
            statuses[source_id] = _stage_source(path, source_id, root, key, front_end, settings)
            source = staging.read_json(staging.current_dir(root, source_id) / "source.json")
            entries.append({**source, "path": str(path)})
    except BaseException:
        staging.remove_empty(work, root)
        raise
    staging.commit(root, entries, settings, front_end.describe(), config)
    return statuses


def _stage_source(
    path: Path,
    source_id: str,
    root: Path,
    key: str,
    front_end: AudioFrontEnd,
    settings: PipelineSettings,
) -> str:
    """Make sure a finished copy of this source exists in `sources/` or `.work/` -> status."""
    digest = sha256_file(path)
    status = staging.finished_status(root, source_id, digest, key)
    if status is not None:
        return status
    with staging.scratch(root, source_id) as out:
        report = process_source(path, out, front_end, settings)
        source = {"id": source_id, "path": str(path), "sha256": digest, "key": key}
        write_json_atomic(out / "source.json", {**source, "n_frames": report["frames"]})
    print(format_report(source_id, report))
    return "processed"
