"""The face encoder's output kept per source frame, for a source that loops (an avatar: a short
clip of the speaker driven by long audio, shown forward, backward, forward... by `ping_pong`).

A frame's features (bottleneck and skips) depend on its crop, the mask and the reference only,
never on the audio, so on every pass after the first only the decoder (audio encoder, fusion,
UNet decoder) runs. The cache is valid for one source and reference (`bind` clears it for
another) and bounded by a memory budget: frames past it are encoded every time, never evicted
(on a ping-pong loop every frame comes back once per period, so evicting old frames for new
ones would turn every lookup into a miss). Features are kept in the dtype the encoder gives
(float32 for fp32 and int8, bfloat16 for bf16), so a frame decoded from the cache is bit for
bit the frame decoded from a fresh encoding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

Features = list[torch.Tensor]  # [bottleneck, *skips], each (N, C, h, w)


def source_key(sha256: str, transforms: np.ndarray, reference: np.ndarray) -> str:
    """What a frame's features depend on besides its index: the video's content, its crop
    geometry (fps, crop size, smoothing) and the reference crop."""
    digest = hashlib.sha256(sha256.encode())
    digest.update(np.ascontiguousarray(transforms).tobytes())
    digest.update(np.ascontiguousarray(reference).tobytes())
    return digest.hexdigest()


class FaceFeatureCache:
    """Per-frame face features of one source + reference, at most `budget_mb` MiB (0: off)."""

    def __init__(self, budget_mb: float) -> None:
        if budget_mb < 0:
            raise ValueError(f"face_cache_mb={budget_mb}: a memory budget in MiB, >= 0 (0: off)")
        self.budget_bytes = int(budget_mb * 2**20)
        self.key: str | None = None
        self._frames: dict[int, Features] = {}
        self.nbytes = 0
        self.hits = self.misses = 0
        self.keep_new = True

    def __len__(self) -> int:
        return len(self._frames)

    def bind(self, key: str, keep_new: bool = True) -> None:
        """Use the cache for the source + reference `key` names (`source_key`): the features
        of any other are dropped. `keep_new=False`: reuse what is kept, keep nothing more (an
        output that never returns to a frame would fill the budget for nothing)."""
        self.keep_new = keep_new
        if key != self.key:
            self._frames.clear()
            self.nbytes, self.key = 0, key

    def features(self, frames: Sequence[int], encode: Callable[[list[int]], Features]) -> Features:
        """The features of source frames `frames` (in order, repeats allowed): the kept ones
        reused; the rest by one call of `encode(positions in frames)`, kept while the budget
        allows."""
        if self.key is None and self.budget_bytes:
            raise RuntimeError("FaceFeatureCache.features before bind(source key)")
        found = [self._frames.get(int(f)) for f in frames]
        missing = [i for i, kept in enumerate(found) if kept is None]
        self.hits += len(found) - len(missing)
        self.misses += len(missing)
        if not missing:
            return [torch.cat(level) for level in zip(*found, strict=True)]
        fresh = encode(missing)
        if len(missing) == len(found):  # nothing to splice in: the batch as encoded
            for row, i in enumerate(missing):
                self._keep(int(frames[i]), [t[row : row + 1] for t in fresh])
            return fresh
        for row, i in enumerate(missing):
            found[i] = [t[row : row + 1] for t in fresh]
            self._keep(int(frames[i]), found[i])
        return [torch.cat(level) for level in zip(*found, strict=True)]

    def _keep(self, frame: int, features: Features) -> None:
        size = sum(t.numel() * t.element_size() for t in features)
        if not self.keep_new or frame in self._frames or self.nbytes + size > self.budget_bytes:
            return
        # A copy: a view would keep the whole encoded batch alive, uncounted.
        self._frames[frame] = [t.clone() for t in features]
        self.nbytes += size
