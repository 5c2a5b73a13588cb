"""Atomic file writes: a temp file beside the target, renamed onto it only on success.

A crash or an exception mid-write never leaves a half-written checkpoint, cache file or video
where a reader would take it for a complete one. Files get the mode a plain `open()` would give
(0666 minus the umask: `mkstemp` alone makes them 0600), so others sharing a cache can read them.
Temp names carry the writer's pid (`.<name>.pid<N>.<random><suffix>`): a temp left by a killed
writer is removed by the next write of the same target (`remove_stale_temps`).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STALE_AFTER_S = 24 * 3600  # a temp this old is stale even if its pid is alive (pid reuse)


class DiskFullError(OSError):
    """No space left on the device while writing a named file (errno ENOSPC)."""

    def __init__(self, path: str | Path) -> None:
        folder = Path(path).resolve().parent
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device while writing '{path}': free space on the disk "
            f"holding '{folder}', or write somewhere else",
        )


def file_mode() -> int:
    """The mode `open(path, "w")` would give a new file: 0666 minus the process umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it without changing it; setting and restoring it (the fallback) briefly
    # gives other threads' new files a zero umask.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temps of `path` left by writers that died (pid gone) or that are older than
    `max_age_s`; a live writer's temp stays. Returns the removed paths."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.pid(\d+)\.")
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{path.name}.pid*"):
        match = pattern.match(candidate.name)
        if match is None or not candidate.is_file():
            continue
        try:
            age = time.time() - candidate.stat().st_mtime
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and (not _pid_alive(pid) or age > max_age_s):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """A new empty temp file in `path`'s folder (created if needed), named after `path` and this
    pid, with the mode a plain write would give; stale temps of `path` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=suffix
    )
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path in `path`'s folder (created if needed); when the block succeeds, the temp
    file replaces `path`; when it raises, the temp file is removed and `path` is untouched.
    `suffix` keeps an extension for writers that infer the format from it (".npz", ".wav").
    A full disk raises `DiskFullError` naming `path`."""
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno == errno.ENOSPC and not isinstance(error, DiskFullError):
            raise DiskFullError(path) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
