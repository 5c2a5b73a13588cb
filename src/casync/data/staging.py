"""Staging and committing a speaker's cache, so that any error leaves the committed cache as it
was: each finished source is renamed into `.work/<id>`, and `commit` swaps them all into
`sources/` and writes `meta.json` last (until it lands, the cache reads as incomplete).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from casync.data.cache import FORMAT_VERSION, write_json_atomic

if TYPE_CHECKING:
    from casync.data.pipeline import PipelineSettings


def settings_key(settings: PipelineSettings, audio: dict) -> str:
    """A source is redone when this changes. The format version is part of it: a new format
    redoes every source."""
    blob = json.dumps(
        {"format": FORMAT_VERSION, "settings": asdict(settings), "audio": audio}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _matches(source_dir: Path, digest: str, key: str) -> bool:
    """A finished source dir made from this exact file content with these settings."""
    stored = read_json(source_dir / "source.json")
    return stored.get("sha256") == digest and stored.get("key") == key


def finished_status(root: Path, source_id: str, digest: str, key: str) -> str | None:
    """The status of a source already finished from this content and key (committed, or staged
    by an interrupted run), or None when it must be processed."""
    done, staged = root / "sources" / source_id, root / ".work" / source_id
    if _matches(done, digest, key):
        shutil.rmtree(staged, ignore_errors=True)  # an older run's leftover, not this file
        return "skipped (unchanged)"
    if _matches(staged, digest, key):
        return "reused (finished by an interrupted run)"
    return None


@contextmanager
def scratch(root: Path, source_id: str) -> Iterator[Path]:
    """An empty scratch dir for one source; on a clean exit it replaces `.work/<id>`, on any
    error it is removed."""
    staged = root / ".work" / source_id
    tmp = root / ".work" / f".{source_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        shutil.rmtree(staged, ignore_errors=True)
        os.replace(tmp, staged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def current_dir(root: Path, source_id: str) -> Path:
    """Where a source's finished copy is: staged by this run, else committed."""
    staged = root / ".work" / source_id
    return staged if staged.is_dir() else root / "sources" / source_id


def remove_empty(*dirs: Path) -> None:
    """Undo directories this run created, if they hold nothing (finished sources stay)."""
    for directory in dirs:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _swap_sources(root: Path, listed: list[str], trash: Path) -> None:
    """Staged sources replace committed ones; sources no longer listed move to `trash`."""
    sources, work = root / "sources", root / ".work"
    sources.mkdir(exist_ok=True)
    for source_id in listed:
        if (work / source_id).is_dir():
            if (sources / source_id).exists():
                os.replace(sources / source_id, trash / source_id)
            os.replace(work / source_id, sources / source_id)
    for stale in sources.iterdir():
        if stale.name not in listed:
            os.replace(stale, trash / stale.name)


def commit(
    root: Path,
    entries: list[dict],
    settings: PipelineSettings,
    audio: dict,
    config: dict,
) -> None:
    """Swap staged sources in, drop sources no longer listed, write meta.json last."""
    (root / "meta.json").unlink(missing_ok=True)  # until the new meta lands, nothing reads valid
    trash = root / f".trash-{os.getpid()}"
    trash.mkdir(exist_ok=True)
    _swap_sources(root, [entry["id"] for entry in entries], trash)
    for entry in entries:
        entry["duration_s"] = entry["n_frames"] / settings.fps
        quality = read_json(root / "sources" / entry["id"] / "quality.json")
        entry["frame_size"] = quality["frame_size"]
    meta = {
        "format_version": FORMAT_VERSION,
        "speaker": root.name,
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
    shutil.rmtree(root / ".work", ignore_errors=True)
