"""The reference crop: a closed-mouth training frame of the speaker, shown to the network beside
every masked crop so it knows the speaker's lips, teeth and skin.

Inference feeds one reference for every frame, so a closed mouth there makes silence (and the
start of every utterance) come out closed and still. Training with that same reference
(`reference="closed_mouth"`) shows the network exactly what it will get at inference.
"""

from __future__ import annotations

import numpy as np

from casync.data.cache import SourceCache
from casync.face.lips import mouth_opening


def closed_mouth_frame(source: SourceCache, frames: range) -> int:
    """The frame of `frames` with the most closed mouth among those where a face was found (all
    of `frames` when none was)."""
    if len(frames) == 0:
        raise ValueError(f"source {source.id}: no frames to choose a reference from")
    candidates = np.arange(frames.start, frames.stop)
    found = np.asarray(source.face_found[candidates], dtype=bool)
    if found.any():
        candidates = candidates[found]
    opening = mouth_opening(np.asarray(source.landmarks[candidates], dtype=np.float32))
    return int(candidates[int(np.argmin(opening))])
