"""An avatar's frames on disk: compressed, with fast random access, never all in memory.

The full frames are an H.264 stream with a keyframe every `GOP` frames (`frames.mp4`), written
as the one decode pass hands them out; the face crops the network sees are kept losslessly
beside it (`crops.png`: one PNG per crop, back to back, and `crops.index.npy`: where each
starts), so generated crops are the same bit for bit as from the raw video, and only the frame
around the mouth carries H.264's loss (crf `CRF`; measured in the avatar record). PNG at its
fastest level stores a crop in 0.46 of its raw bytes (10 minutes of 160 px crops: 0.53 GB, not
1.15) for ~5 ms to write and ~1 ms to read one.

Reading frame i decodes its group of pictures once (seek to its keyframe) and keeps that group,
so sequential and ping-pong (backward) playback decode each frame once per pass.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

GOP = 12  # frames per keyframe: a backward step costs at most one group's decode
CRF = 5  # x264 constant rate factor of the stored frames: ~45-48 dB on real 512 px and GRID footage
PRESET = "veryfast"


class FrameWriter:
    """Append RGB frames to `path` (H.264, yuv444p so colour edges stay sharp)."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.container = av.open(str(path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv444p"
        self.time_base = self.stream.time_base = 1 / rate  # the muxer may change the stream's
        self.stream.options = {
            "crf": str(CRF), "preset": PRESET, "g": str(GOP), "keyint_min": str(GOP),
            "sc_threshold": "0", "bf": "0",
        }  # fmt: skip
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.count
        video_frame.time_base = self.time_base
        self.container.mux(self.stream.encode(video_frame))
        self.count += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


class FrameReader:
    """Random access to the frames of a `FrameWriter` file, one group of pictures cached."""

    def __init__(self, path: Path, n_frames: int) -> None:
        self.path = path
        self.n_frames = n_frames
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self._group_start = -1
        self._group: list[np.ndarray] = []

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} of an avatar of {self.n_frames} frames")
        start = index - index % GOP
        if start != self._group_start:
            self._group = self._decode_group(start)
            self._group_start = start
        return self._group[index - start]

    def _decode_group(self, start: int) -> list[np.ndarray]:
        stop = min(start + GOP, self.n_frames)
        self.container.seek(self._pts(start), stream=self.stream, backward=True, any_frame=False)
        group: list[np.ndarray] = []
        for frame in self.container.decode(self.stream):
            index = self._index(frame.pts)
            if index < start:
                continue
            group.append(frame.to_ndarray(format="rgb24"))
            if index + 1 >= stop:
                break
        if len(group) != stop - start:
            raise RuntimeError(f"{self.path}: frames {start}-{stop - 1} could not be read back")
        return group

    def _pts(self, index: int) -> int:
        return int(round(index / self._rate() / self.stream.time_base))

    def _index(self, pts: int) -> int:
        return int(round(float(pts * self.stream.time_base) * self._rate()))

    def _rate(self) -> float:
        return float(self.stream.average_rate or self.stream.guessed_rate)

    def close(self) -> None:
        self.container.close()
        self._group = []


class CropWriter:
    """Append (S, S, 3) uint8 crops as PNGs to one file; `close` writes their index beside it
    (`<stem>.index.npy`: N + 1 byte offsets)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.offsets = [0]

    def write(self, crop: np.ndarray) -> None:
        rgb = np.ascontiguousarray(crop, np.uint8)
        ok, png = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError(f"PNG encoding of a {rgb.shape} crop failed")
        self.file.write(png.tobytes())
        self.offsets.append(self.offsets[-1] + len(png))

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def close(self) -> None:
        self.file.close()
        np.save(index_path(self.path), np.asarray(self.offsets, np.int64))


def index_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.index.npy")


class CropStore:
    """Read-only (N, S, S, 3) uint8 crops by index, decoded on demand (`crops[i]`)."""

    def __init__(self, path: Path, n_frames: int, size: int) -> None:
        self.offsets = np.load(index_path(path))  # no pickles
        self.shape = (n_frames, size, size, 3)
        ends_in_file = self.offsets[-1] == path.stat().st_size
        if (
            len(self.offsets) != n_frames + 1
            or not ends_in_file
            or (np.diff(self.offsets) <= 0).any()
        ):
            raise ValueError(f"{path}: its index does not describe {n_frames} crops in it")
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"crop {index} of {len(self)}")
        start, stop = self.offsets[index], self.offsets[index + 1]
        png = os.pread(self._fd, int(stop - start), int(start))  # thread-safe: no shared seek
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape != self.shape[1:]:
            raise ValueError(f"crop {index} is not a {self.shape[1:]} PNG")
        return bgr[..., ::-1].copy()

    def close(self) -> None:
        os.close(self._fd)
