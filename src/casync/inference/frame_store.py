"""`FrameStore`: decoded frames kept for random access (ping-pong, streaming), spilling to disk."""

from __future__ import annotations

import tempfile

import numpy as np


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
