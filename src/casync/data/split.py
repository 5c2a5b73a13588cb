"""Train/validation split by contiguous time ranges, per source (no neighbouring-frame leakage)."""

from __future__ import annotations


def split_ranges(n_frames: int, val_fraction: float = 0.25, gap: int = 10) -> tuple[range, range]:
    """-> (train, val) frame ranges of one source.

    Validation is the last `round(n_frames * val_fraction)` frames; training is everything before
    it minus `gap` frames, so no training frame's audio window overlaps a validation frame's.
    `CASyncDataModule.split` is its one caller; evaluation reads the DataModule's split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    n_val = round(n_frames * val_fraction)
    if n_val == 0:
        return range(0, n_frames), range(n_frames, n_frames)
    return range(0, max(0, n_frames - n_val - gap)), range(n_frames - n_val, n_frames)
