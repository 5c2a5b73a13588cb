"""The fixed reference crop shipped in a checkpoint: the closed-mouth training frame of the
first source (see `casync.data.reference`), the one `data.reference=closed_mouth` trains with."""

from __future__ import annotations

import numpy as np

from casync.data.reference import closed_mouth_frame


def choose_reference_crop(data) -> np.ndarray | None:
    """(H, W, 3) uint8 crop: the first source's closed-mouth training frame; None if `data` (a
    `CASyncDataModule`, or anything with its `sources` and `split()`) has no sources."""
    if not getattr(data, "sources", None):
        return None
    source = data.sources[0]
    return np.array(source.crops[closed_mouth_frame(source, data.split()[0][0])])
