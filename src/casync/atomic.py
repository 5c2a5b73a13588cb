"""Atomic file writes: a temp file beside the target, renamed onto it only on success.

A crash or an exception mid-write never leaves a half-written checkpoint, cache file or video
where a reader would take it for a complete one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path in `path`'s folder (created if needed); when the block succeeds, the temp
    file replaces `path`; when it raises, the temp file is removed and `path` is untouched.
    `suffix` keeps an extension for writers that infer the format from it (".npz", ".wav")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
