"""A source prepared for live use: its frames, face transforms, the network's reference crop and
the idle loop (a calm, silent stretch played forward and backward, never a frozen frame). Where
the footage has no pause, its calmest stretch loops with a resting mouth generated over it.

The source is a `casync.avatar.Avatar` (prepared once by `python -m casync.avatar`: its idle
loop, stored crops) or any object with `SourceVideo`'s attributes (`casync.inference.source`);
without an `idle_range` the whole video loops. The idle loop's frames are decoded once and kept:
every session reads them on every tick, at its own place in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casync.face import cut_crop
from casync.inference.face_cache import FaceFeatureCache, source_key
from casync.inference.schedule import ping_pong
from casync.inference.source import choose_reference, prepare_source


@dataclass
class LiveAvatar:
    name: str
    source: object  # SourceVideo or casync.Avatar: frames, transforms, face_found, fps
    reference: np.ndarray  # (S, S, 3) uint8 reference crop for the network
    idle_range: tuple[int, int]  # [first, end) source frames of the idle loop
    crop_size: int
    frames: list[np.ndarray]  # the idle range's frames, decoded once
    face_cache: FaceFeatureCache  # the face encoder's output per source frame (the loop repeats)
    rest: np.ndarray | None = None  # (L, S, S, 3) uint8 resting mouths over the idle loop, or None

    @classmethod
    def from_source(
        cls, name: str, generator, source, idle_range=None, face_cache_mb: float = 256
    ) -> LiveAvatar:
        """`generator`: the `LoadedGenerator` the avatar will be rendered with; `idle_range`
        replaces the source's own; `face_cache_mb` bounds the kept face features (0: off)."""
        lo, hi = idle_range or getattr(source, "idle_range", (0, source.n_frames))
        if not 0 <= lo < hi <= source.n_frames:
            raise ValueError(
                f"avatar {name}: idle range [{lo}, {hi}) outside its {source.n_frames} frames"
            )
        if source.frames is None or len(source.frames) < hi:
            raise ValueError(
                f"avatar {name}: the source keeps no frames (prepare it with keep_frames=None)"
            )
        reference, _ = choose_reference(generator, source)
        frames = [np.asarray(source.frames[i]) for i in range(lo, hi)]
        reference = np.asarray(reference)
        cache = FaceFeatureCache(face_cache_mb)
        cache.bind(source_key(source.sha256, np.asarray(source.transforms), reference))
        return cls(name, source, reference, (int(lo), int(hi)), generator.crop_size, frames, cache)

    @classmethod
    def from_video(cls, name: str, generator, video, idle_range=None) -> LiveAvatar:
        source = prepare_source(
            video, generator.fps, generator.crop_size, generator.smoothing, keep_frames=None
        )
        return cls.from_source(name, generator, source, idle_range)

    @classmethod
    def from_folder(cls, name: str, generator, folder, idle_range=None) -> LiveAvatar:
        """An avatar folder made by `python -m casync.avatar` for this checkpoint."""
        from casync.avatar import load_avatar

        return cls.from_source(name, generator, load_avatar(folder, generator), idle_range)

    @property
    def fps(self) -> float:
        return float(self.source.fps)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height)"""
        return tuple(self.source.frame_size)

    @property
    def loop_talks(self) -> bool:
        """The idle loop is speech (a prepared avatar whose footage has no pause): it needs a
        resting mouth painted over it (`LiveModel.rest_mouths`)."""
        idle = getattr(self.source, "idle", None)
        return idle is not None and not idle.quiet

    def rest_crop(self, index: int) -> np.ndarray | None:
        """The resting mouth over source frame `index`, when the loop has them."""
        return None if self.rest is None else self.rest[index - self.idle_range[0]]

    def idle_index(self, tick: int) -> int:
        """The source frame at `tick`: ping-pong over the idle range, talking or not."""
        lo, hi = self.idle_range
        period = max(2 * (hi - lo - 1), 1)  # one tick of `ping_pong`'s cycle, as it counts
        return lo + int(ping_pong(period, hi - lo)[tick % period])

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 source frame `index` of the idle range (shared: do not modify)."""
        return self.frames[index - self.idle_range[0]]

    def crop(self, index: int) -> np.ndarray:
        """The network's (S, S, 3) uint8 crop of source frame `index` (an avatar's stored one)."""
        if hasattr(self.source, "crops"):
            return np.asarray(self.source.crops[index])
        return cut_crop(self.frame(index), self.source.transforms[index], self.crop_size)
