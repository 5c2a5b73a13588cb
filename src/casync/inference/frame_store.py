"""`FrameStore`: decoded frames kept for random access (ping-pong, streaming) in a bounded budget.

Frames stay raw in memory up to `max_ram_bytes`; past it they are spilled to a temporary file as
JPEG (quality `spill_quality`, 4:2:0), read back by offset. A long or 4K source then costs about
a tenth of its raw size on disk (a 4K frame: 24.9 MB raw, under 1 MB as JPEG) and a fixed amount
of memory, instead of its raw size in both. Spilled frames lose what JPEG loses (about 45-50 dB
PSNR at quality 95); the crops the network sees come from the frames as stored.
"""

from __future__ import annotations

import os
import tempfile

import cv2
import numpy as np

DEFAULT_RAM_BYTES = 1 << 30
SPILL_QUALITY = 95


class FrameStore:
    """Append-only RGB frames with random access: raw in memory up to `max_ram_bytes`, then
    JPEG in a temporary file (deleted on close, and by the OS if the process dies)."""

    def __init__(
        self, max_ram_bytes: int = DEFAULT_RAM_BYTES, spill_quality: int = SPILL_QUALITY
    ) -> None:
        self.max_ram_bytes = max_ram_bytes
        self.spill_quality = spill_quality
        self._ram: list[np.ndarray] = []
        self._ram_bytes = 0
        self._file = None
        self._spans: list[tuple[int, int]] = []  # (offset, length) of each spilled frame
        self._end = 0

    def append(self, frame: np.ndarray) -> None:
        if not self._spans and self._ram_bytes + frame.nbytes <= self.max_ram_bytes:
            self._ram.append(frame)
            self._ram_bytes += frame.nbytes
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="casync-frames-")  # noqa: SIM115 (closed in close())
        bgr = cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.spill_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding of a {frame.shape} frame failed")
        data = encoded.tobytes()
        self._file.write(data)
        self._spans.append((self._end, len(data)))
        self._end += len(data)

    def __len__(self) -> int:
        return len(self._ram) + len(self._spans)

    @property
    def spilled_bytes(self) -> int:
        return self._end

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self)
        if index < len(self._ram):
            return self._ram[index]
        offset, length = self._spans[index - len(self._ram)]  # IndexError past the end
        self._file.flush()
        data = os.pread(self._file.fileno(), length, offset)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._ram.clear()
        self._ram_bytes = 0
        if self._file is not None:
            self._file.close()
            self._file = None
