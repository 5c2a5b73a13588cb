"""Train/validation/test split by contiguous time ranges, per source (no neighbouring-frame
leakage): [train][gap][validation][gap][test]. Validation selects (checkpoints, sweep trials);
test only reports."""

from __future__ import annotations


def split_three(
    n_frames: int, val_fraction: float = 0.25, test_fraction: float = 0.0, gap: int = 10
) -> tuple[range, range, range]:
    """-> (train, val, test) frame ranges of one source.

    Test is the last `round(n_frames * test_fraction)` frames; validation the
    `round(n_frames * val_fraction)` frames before it, `gap` frames earlier when there is a test
    range; training is everything before validation minus `gap` frames. No frame's audio window
    (at most `gap` frames wide) reaches into another split. `CASyncDataModule.split` is its one
    caller; evaluation reads the DataModule's split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"test_fraction must be in [0, 1) and val_fraction + test_fraction < 1, got "
            f"test_fraction={test_fraction} with val_fraction={val_fraction}"
        )
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    n_test = round(n_frames * test_fraction)
    test = range(n_frames - n_test, n_frames)
    val_stop = max(0, test.start - gap) if n_test else n_frames
    n_val = min(round(n_frames * val_fraction), val_stop)
    if n_val == 0:
        return range(0, val_stop), range(val_stop, val_stop), test
    val = range(val_stop - n_val, val_stop)
    return range(0, max(0, val.start - gap)), val, test


def split_ranges(n_frames: int, val_fraction: float = 0.25, gap: int = 10) -> tuple[range, range]:
    """-> (train, val) frame ranges of one source without a test range (`split_three`)."""
    train, val, _ = split_three(n_frames, val_fraction, 0.0, gap)
    return train, val
