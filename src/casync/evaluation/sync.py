"""A lip-sync check that needs no pretrained expert: drive the model with its audio shifted in
time and measure how much worse the mouth gets.

A model that follows the audio matches the real mouth best when the audio is aligned, so both
LMD (up) and mouth-opening correlation (down) get worse at every shift. A model that ignores the
audio scores the same at every shift (margin 0).

Each margin comes with a 90 % interval from a moving-block bootstrap over the scored frames
(blocks of 0.2 s: neighbouring frames are not independent), so a short held-out range says how
much its verdict can be trusted: `evidence` is "follows" when every interval lies above 0, "does
not follow" when some margin's interval reaches no higher than 0, and "inconclusive" otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from casync.evaluation.lip_landmarks import lmd, mouth_opening, per_frame_lmd

SHIFTS_S = (-0.5, -0.2, 0.2, 0.5)
# The verdict's threshold: aligned audio must beat EVERY shift, with a mouth-opening correlation
# higher by at least this much and a strictly lower LMD. 0.1 is far above what frame-exact
# repeats give (0) and well below what speech-driven mouths lose at 0.2 s (~0.3 or more).
CORRELATION_MARGIN_MIN = 0.1
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_BLOCK_S = 0.2
INTERVAL = (5.0, 95.0)  # percentiles: a 90 % interval


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D signals over the samples where both are finite; NaN when
    fewer than 3 such samples or either signal is constant there (correlation is undefined)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"signal shapes differ: {a.shape} vs {b.shape}")
    valid = np.isfinite(a) & np.isfinite(b)
    if valid.sum() < 3:
        return float("nan")
    a, b = a[valid] - a[valid].mean(), b[valid] - b[valid].mean()
    norm = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-12 else float("nan")


def shift_frames(seconds: float, fps: float) -> int:
    """Seconds -> whole video frames, rounding half away from zero (0.5 s at 25 fps -> 13)."""
    return int(math.copysign(math.floor(abs(seconds) * fps + 0.5), seconds))


def shift_windows(windows: np.ndarray, shift: int) -> np.ndarray:
    """Per-frame audio windows (N, ...) delayed by `shift` frames: frame j gets window j - shift
    (positive = audio late). Frames shifted in from outside repeat the edge window (no wrap)."""
    source = np.clip(np.arange(len(windows)) - shift, 0, len(windows) - 1)
    return windows[source]


def block_bootstrap(n: int, block: int, samples: int, seed: int = 0) -> np.ndarray:
    """(samples, n) resampled positions 0..n-1: each row joins runs of `block` consecutive
    positions starting at random places (moving-block bootstrap), cut to n."""
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(samples, -(-n // block)))
    return (starts[..., None] + np.arange(block)).reshape(samples, -1)[:, :n]


def margin_intervals(
    aligned: np.ndarray,
    shifted: np.ndarray,
    real: np.ndarray,
    block: int,
    samples: int = BOOTSTRAP_SAMPLES,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """90 % intervals of (LMD margin, correlation margin) between lip landmarks `aligned` and
    `shifted` against `real` (all (N, K, 2), the scored frames in time order)."""
    if len(real) < 3:  # no correlation to resample
        return (float("nan"), float("nan")), (float("nan"), float("nan"))
    rows = block_bootstrap(len(real), block, samples)
    aligned_lmd, shifted_lmd = per_frame_lmd(aligned, real), per_frame_lmd(shifted, real)
    openings = [mouth_opening(points) for points in (aligned, shifted, real)]
    lmd_margins, corr_margins = [], []
    with warnings.catch_warnings():  # rows without any landmarks give NaN, dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        for row in rows:
            lmd_margins.append(np.nanmean(shifted_lmd[row]) - np.nanmean(aligned_lmd[row]))
            a, s, r = (o[row] for o in openings)
            corr_margins.append(pearson(a, r) - pearson(s, r))

    def interval(values: list[float]) -> tuple[float, float]:
        values = np.asarray(values)
        values = values[np.isfinite(values)]
        if len(values) < samples // 2:  # mostly undefined: no interval
            return (float("nan"), float("nan"))
        low, high = np.percentile(values, INTERVAL)
        return (float(low), float(high))

    return interval(lmd_margins), interval(corr_margins)


def evidence(results: list) -> str:
    """What the shifts' margin intervals support: follows, does not follow, or inconclusive."""
    bounds = np.array([(*r.lmd_margin_ci, *r.correlation_margin_ci) for r in results])
    if np.isnan(bounds).any():
        return "inconclusive"
    lows, highs = bounds[:, [0, 2]], bounds[:, [1, 3]]
    if (lows > 0).all():
        return "follows"
    if (highs <= 0).any():
        return "does not follow"
    return "inconclusive"


@dataclass(frozen=True)
class ShiftResult:
    """Scores at one shift; margins are positive when the shift made things worse."""

    shift_s: float
    shift_frames: int
    lmd: float
    correlation: float
    lmd_margin: float  # lmd(shifted) - lmd(aligned), on the same frames
    correlation_margin: float  # correlation(aligned) - correlation(shifted)
    frames: int  # frames compared (those with speech whose shifted audio exists)
    lmd_margin_ci: tuple[float, float]  # 90 % block-bootstrap interval
    correlation_margin_ci: tuple[float, float]


@dataclass(frozen=True)
class ShiftCheck:
    """The aligned scores, each shift's, and the smallest margins over shifts (the verdict's)."""

    aligned_lmd: float
    aligned_correlation: float
    shifts: list[ShiftResult]
    lmd_margin: float
    correlation_margin: float
    follows_audio: bool
    frames: int  # how many frames were scored
    evidence: str  # what the margins' intervals support: see the module docstring

    def to_dict(self) -> dict:
        return asdict(self)


def scores(
    points: np.ndarray, real_points: np.ndarray, real_opening: np.ndarray, subset: np.ndarray
) -> tuple[float, float]:
    """(LMD, mouth-opening correlation) of lip landmarks `points` against the real ones, on the
    frames where the bool mask `subset` is True."""
    return (
        lmd(points[subset], real_points[subset]),
        pearson(mouth_opening(points[subset]), real_opening[subset]),
    )


def shift_result(
    seconds: float,
    shift: int,
    aligned: np.ndarray,
    shifted: np.ndarray,
    real_points: np.ndarray,
    real_opening: np.ndarray,
    subset: np.ndarray,
    block: int,
) -> ShiftResult:
    """One shift's scores and margins over aligned audio, both on the frames in `subset`."""
    shifted_lmd, shifted_corr = scores(shifted, real_points, real_opening, subset)
    base_lmd, base_corr = scores(aligned, real_points, real_opening, subset)
    lmd_ci, corr_ci = margin_intervals(aligned[subset], shifted[subset], real_points[subset], block)
    return ShiftResult(
        shift_s=float(seconds),
        shift_frames=shift,
        lmd=shifted_lmd,
        correlation=shifted_corr,
        lmd_margin=shifted_lmd - base_lmd,
        correlation_margin=base_corr - shifted_corr,
        frames=int(subset.sum()),
        lmd_margin_ci=lmd_ci,
        correlation_margin_ci=corr_ci,
    )


def shift_check(
    generate: Callable[[int], np.ndarray],
    real_points: np.ndarray,
    fps: float,
    shifts_s: Sequence[float] = SHIFTS_S,
    correlation_margin_min: float = CORRELATION_MARGIN_MIN,
    frames: np.ndarray | None = None,
    has_audio: Callable[[int], np.ndarray] | None = None,
) -> ShiftCheck:
    """`generate(shift_frames)` returns lip landmarks (N, 40, 2) of frames generated with the
    audio windows shifted by `shift_frames` (see `shift_windows`); `real_points` are the real
    frames' landmarks. Scores use the frames where the bool mask `frames` is True (all when None).
    `has_audio(shift_frames)` -> (N,) bool marks the frames whose shifted audio exists (not past
    either end of the recording); each shift is compared with aligned audio on the frames where
    both exist. `follows_audio` is True when aligned audio beats every shift by at least
    `correlation_margin_min` in mouth-opening correlation and by any amount in LMD (NaN fails).
    Margin intervals resample the compared frames in blocks of `BOOTSTRAP_BLOCK_S`."""
    keep = np.ones(len(real_points), bool) if frames is None else np.asarray(frames, bool)
    real_opening = mouth_opening(real_points)
    aligned = generate(0)
    aligned_lmd, aligned_corr = scores(aligned, real_points, real_opening, keep)
    block = max(1, round(BOOTSTRAP_BLOCK_S * fps))
    results = []
    for seconds in shifts_s:
        shift = shift_frames(seconds, fps)
        subset = keep if has_audio is None else keep & np.asarray(has_audio(shift), bool)
        shifted = generate(shift)
        results.append(
            shift_result(seconds, shift, aligned, shifted, real_points, real_opening, subset, block)
        )
    # np.min propagates NaN (Python's min() may drop it): an undefined score (no lips found, a
    # constant mouth) makes its margin NaN and the verdict False.
    margins = np.array([(r.lmd_margin, r.correlation_margin) for r in results])
    lmd_margin, corr_margin = (float(m) for m in margins.min(axis=0))
    return ShiftCheck(
        aligned_lmd=aligned_lmd,
        aligned_correlation=aligned_corr,
        shifts=results,
        lmd_margin=lmd_margin,
        correlation_margin=corr_margin,
        follows_audio=bool(lmd_margin > 0 and corr_margin >= correlation_margin_min),
        frames=int(keep.sum()),
        evidence=evidence(results),
    )
