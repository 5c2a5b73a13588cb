"""Which source frame shows at each output frame: forward, then backward, then forward again
(ping-pong), so a source clip shorter than the driving audio loops without a jump cut."""

from __future__ import annotations

import numpy as np


def ping_pong(n_out: int, n_source: int) -> np.ndarray:
    """(n_out,) int64 source indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...

    The turning frames are not repeated (a repeat would read as a one-frame freeze). When the
    audio is shorter than the video this is simply 0..n_out-1: the output stops with the audio."""
    if n_source < 1:
        raise ValueError("the source video has no frames")
    if n_out < 0:
        raise ValueError(f"n_out must be >= 0, got {n_out}")
    if n_source == 1:
        return np.zeros(n_out, dtype=np.int64)
    period = 2 * (n_source - 1)
    phase = np.arange(n_out, dtype=np.int64) % period
    return np.where(phase < n_source, phase, period - phase)
