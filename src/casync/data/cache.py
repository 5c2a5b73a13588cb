"""The versioned on-disk cache (format in docs/DESIGN.md): streaming writers and the reader.

A speaker's cache is valid only when `meta.json` exists, has this `FORMAT_VERSION`, and every
source it lists has a complete `sources/<id>/` whose `source.json` matches the meta entry. Sources
are written to a scratch dir and renamed into place; `meta.json` is written last, atomically, so an
interrupted run never leaves anything that reads as valid.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casync.atomic import atomic_path

FORMAT_VERSION = 3  # 2: levels_dbfs (per-frame audio level); 3: one mask.npy for all frames
ARRAYS = ("crops", "mask", "transforms", "landmarks", "face_found", "audio", "levels_dbfs")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class CacheError(ValueError):
    """The cache is missing, incomplete or from another format version."""


def validate_name(name: str, what: str = "speaker name") -> str:
    """Names become directory names: letters, digits, `_.-`, not starting with `.`, <= 64 chars."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (it becomes a directory name, so no '/', '..' or spaces)"
        )
    return name


class CacheBusyError(RuntimeError):
    """Another process holds the speaker's cache lock."""


@contextmanager
def speaker_lock(cache_dir: str | Path, speaker: str) -> Iterator[None]:
    """Hold an exclusive lock on `<cache_dir>/<speaker>` for a whole preprocess run, or raise
    CacheBusyError at once. The lock is `flock` on `<cache_dir>/.<speaker>.lock` (released by the
    kernel when the holder dies, so a killed run never leaves it held); the file names the pid."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{validate_name(speaker)}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            raise CacheBusyError(
                f"another preprocess of {speaker} is running (pid {pid}) on {cache_dir / speaker}: "
                "wait for it to finish (or stop it), then run this again"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


class NpyWriter:
    """Append rows to a `.npy` file of unknown length without holding them in memory.

    The header is written with a fixed size and rewritten with the final row count on close."""

    HEADER_BYTES = 128

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype | str) -> None:
        self.path, self.row_shape, self.dtype = path, tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(self._header())

    def _header(self) -> bytes:
        header = repr(
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.rows, *self.row_shape),
            }
        )
        length = self.HEADER_BYTES - 10
        assert len(header) < length, header
        text = header.ljust(length - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + text.encode("latin1")

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, *self.row_shape)
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self._file.seek(0)
        self._file.write(self._header())  # same size, now with the final row count
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self.close()


def _hint(speaker: str) -> str:
    return f"run `python -m casync.preprocess speaker={speaker}`"


@dataclass
class SourceCache:
    """One source's arrays, memory-mapped on first access (picklable: maps are reopened lazily,
    so a Dataset holding it works with DataLoader workers)."""

    id: str
    dir: Path
    n_frames: int
    info: dict
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __getattr__(self, name: str) -> np.ndarray:
        if name in ARRAYS:
            if name not in self._arrays:
                self._arrays[name] = np.load(self.dir / f"{name}.npy", mmap_mode="r")
            return self._arrays[name]
        raise AttributeError(name)

    @property
    def masks(self) -> np.ndarray:
        """(n_frames, S, S) read-only view of the one region mask (fixed in crop coordinates, so
        the cache stores it once)."""
        return np.broadcast_to(self.mask, (self.n_frames, *self.mask.shape))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def quality(self) -> dict:
        return json.loads((self.dir / "quality.json").read_text())


@dataclass
class SpeakerCache:
    speaker: str
    root: Path
    meta: dict
    sources: list[SourceCache]

    @property
    def audio_meta(self) -> dict:
        """The audio front end's `describe()` dict the features were made with."""
        return self.meta["audio"]

    @property
    def n_frames(self) -> int:
        return sum(source.n_frames for source in self.sources)


def open_cache(cache_dir: str | Path, speaker: str) -> SpeakerCache:
    """Open `<cache_dir>/<speaker>` for reading; CacheError if missing, incomplete or stale."""
    validate_name(speaker)
    root = Path(cache_dir) / speaker
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise CacheError(f"no complete cache for speaker '{speaker}' at {root}: {_hint(speaker)}")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"cache {root} has format version {meta.get('format_version')}, this code reads "
            f"version {FORMAT_VERSION}: {_hint(speaker)} to rebuild it"
        )
    sources = []
    for entry in meta["sources"]:
        try:  # meta.json is a file: its ids become paths only once checked
            source_dir = root / "sources" / validate_name(entry["id"], "source id")
        except ValueError as error:
            raise CacheError(f"cache {root}: meta.json lists {error}: {_hint(speaker)}") from None
        source_json = source_dir / "source.json"
        stored = json.loads(source_json.read_text()) if source_json.is_file() else {}
        missing = [name for name in ARRAYS if not (source_dir / f"{name}.npy").is_file()]
        if missing or stored.get("sha256") != entry["sha256"] or stored.get("key") != entry["key"]:
            raise CacheError(
                f"cache {root} is incomplete (source '{entry['id']}' is missing or does not match "
                f"meta.json; an interrupted run?): {_hint(speaker)}"
            )
        sources.append(SourceCache(entry["id"], source_dir, int(entry["n_frames"]), entry))
    return SpeakerCache(speaker, root, meta, sources)
