"""A source prepared for live use: its frames, face transforms, the network's reference crop and
the idle loop (a calm, silent stretch played forward and backward, never a frozen frame).

The source is any object with `SourceVideo`'s attributes (`casync.inference.source`), or a
`casync.Avatar` once that lands, which adds `idle_range`; without one the whole video loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casync.inference.schedule import ping_pong
from casync.inference.source import choose_reference, prepare_source


@dataclass
class LiveAvatar:
    name: str
    source: object  # SourceVideo or casync.Avatar: frames, transforms, face_found, fps
    reference: np.ndarray  # (S, S, 3) uint8 reference crop for the network
    idle_range: tuple[int, int]  # [first, end) source frames of the idle loop

    @classmethod
    def from_source(cls, name: str, generator, source) -> LiveAvatar:
        """`generator`: the `LoadedGenerator` the avatar will be rendered with."""
        lo, hi = getattr(source, "idle_range", (0, source.n_frames))
        if not 0 <= lo < hi <= source.n_frames:
            raise ValueError(
                f"avatar {name}: idle range [{lo}, {hi}) outside its {source.n_frames} frames"
            )
        if source.frames is None or len(source.frames) < hi:
            raise ValueError(
                f"avatar {name}: the source keeps no frames (prepare it with keep_frames=None)"
            )
        reference, _ = choose_reference(generator, source)
        return cls(name, source, np.asarray(reference), (int(lo), int(hi)))

    @classmethod
    def from_video(cls, name: str, generator, video) -> LiveAvatar:
        source = prepare_source(
            video, generator.fps, generator.crop_size, generator.smoothing, keep_frames=None
        )
        return cls.from_source(name, generator, source)

    @property
    def fps(self) -> float:
        return float(self.source.fps)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height)"""
        return tuple(self.source.frame_size)

    def idle_index(self, tick: int) -> int:
        """The source frame at `tick`: ping-pong over the idle range, talking or not."""
        lo, hi = self.idle_range
        period = max(2 * (hi - lo - 1), 1)  # one tick of `ping_pong`'s cycle, as it counts
        return lo + int(ping_pong(period, hi - lo)[tick % period])

    def frame(self, index: int) -> np.ndarray:
        return self.source.frames[index]
