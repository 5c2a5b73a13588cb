"""The lip-sync scores of a generator on held-out frames, and the one objective that selects by
them. `casync.evaluate` (after training) and `casync.training.lipsync.LipSyncValidation` (during
validation) both call these functions: one implementation of what "follows the speech" means.

The objective (lower is better; 0 = the real mouth's landmarks):

    objective = LMD / LMD of the still mouth                    (on the same frames)
              + max(0, CORRELATION_FLOOR - mouth-opening correlation)
              + max(0, SHARPNESS_FLOOR - mouth sharpness)

LMD relative to the still mouth carries the ranking: how much closer to the real lips the
generated ones are than a closed mouth held still (< 1: better than doing nothing; GRID s1
recipes reach ~0.55). Alone it can be gamed: a mouth that sits still at the average half-open
shape, or a smear whose landmarks land at the average, scores below a closed mouth without
following the audio. The two guards only cost something for such degenerate outputs: a mouth
whose opening barely correlates with the real one (trained recipes measure 0.8+, a still mouth
~0.2, one that ignores the audio ~0) and a mouth blurred to less than half the real mouth's
Laplacian variance (trained recipes measure 0.6-0.9; sharpness has no upper guard: a pasted
still frame is sharper than real speech frames, which carry motion blur). Undefined scores
(no lips found, a constant opening) count as the worst case: ratio `WORST_RATIO`, correlation 0,
sharpness 0. The measurements behind the floors: experiments/2026-12-07_lipsync_sweep.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from casync.evaluation.lip_landmarks import LipLandmarkExtractor, LipLandmarks
from casync.evaluation.runner import HeldOut, HeldOutGenerator, composite
from casync.evaluation.sync import ShiftCheck, shift_check

CORRELATION_FLOOR = 0.5
SHARPNESS_FLOOR = 0.5
WORST_RATIO = 2.0  # an LMD ratio that is undefined, or worse than twice the still mouth's
SYNC_KEYS = (  # what `sync_summary` returns: logged as val/sync/<key> in training
    "objective",
    "lmd",
    "lmd_still",
    "lmd_ratio",
    "opening_corr",
    "opening_amplitude",
    "sharpness",
    "lmd_margin",
    "corr_margin",
)


def objective(lmd_ratio: float, opening_corr: float, sharpness: float) -> float:
    """The selection objective (lower is better): see the module docstring."""
    ratio = lmd_ratio if math.isfinite(lmd_ratio) else WORST_RATIO
    corr = opening_corr if math.isfinite(opening_corr) else 0.0
    sharp = sharpness if math.isfinite(sharpness) else 0.0
    return (
        min(ratio, WORST_RATIO)
        + max(0.0, CORRELATION_FLOOR - corr)
        + max(0.0, SHARPNESS_FLOOR - sharp)
    )


def sync_summary(casync: dict[str, float], still: dict[str, float], check: ShiftCheck) -> dict:
    """The `SYNC_KEYS` scores from the generated and still-mouth methods' metrics
    (`landmark_metrics` + `mouth/sharpness`) and the shift check on the same frames."""
    lmd, lmd_still = casync["lmd"], still["lmd"]
    ratio = lmd / lmd_still if lmd_still > 0 else float("nan")
    scores = {
        "lmd": lmd,
        "lmd_still": lmd_still,
        "lmd_ratio": ratio,
        "opening_corr": casync["opening_corr"],
        "opening_amplitude": casync["opening_amplitude"],
        "sharpness": casync["mouth/sharpness"],
        "lmd_margin": check.lmd_margin,
        "corr_margin": check.correlation_margin,
    }
    scores["objective"] = objective(ratio, scores["opening_corr"], scores["sharpness"])
    return {key: float(scores[key]) for key in SYNC_KEYS}


def method_frames(held: HeldOut, generate: HeldOutGenerator) -> dict[str, np.ndarray]:
    """The frames each method makes of the held-out range: CASync driven by its own audio, the
    still-mouth baseline (each source's closed-mouth training frame) and the real frames."""
    real, masks = held.crops(), held.masks()
    return {
        "casync": generate(real, masks, held.windows(0), "generate (aligned audio)"),
        "still_mouth": still_mouth_frames(held, real, masks),
        "real": real,
    }


def still_mouth_frames(held: HeldOut, real: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The real crops with their mask region taken from each source's closed-mouth frame."""
    return composite(real, held.closed_mouth_crops()[held.source_index()], masks)


def lips_and_sync(
    held: HeldOut,
    generate: HeldOutGenerator,
    frames: dict[str, np.ndarray],
    extractor: LipLandmarkExtractor,
    shifts_s: Sequence[float],
    silence_dbfs: float,
    known: dict[str, LipLandmarks] | None = None,
    progress: bool = False,
) -> tuple[dict[str, LipLandmarks], ShiftCheck, ShiftCheck]:
    """Lip landmarks of every method's frames (those in `known` are reused, not measured
    again), and the audio-shift sync check over speech frames and over all frames (shifted
    generations are made only for the shifts the check asks for)."""
    real, masks = frames["real"], held.masks()
    lips = dict(known or {})
    lips |= {
        name: extractor(f, progress=progress) for name, f in frames.items() if name not in lips
    }
    shifted: dict[int, np.ndarray] = {0: lips["casync"].points}

    def shifted_lips(shift: int) -> np.ndarray:
        if shift not in shifted:
            crops = generate(real, masks, held.windows(shift), f"generate (shift {shift:+d})")
            shifted[shift] = extractor(crops, progress=progress).points
        return shifted[shift]

    # Sync is scored where there is speech: in silence the real mouth rests or breathes as it
    # likes, and the product holds a still mouth. All frames are reported beside it.
    speech = held.speech(silence_dbfs)
    real_points, shifts_s = lips["real"].points, list(shifts_s)
    has_audio = held.has_shifted_audio
    check = shift_check(shifted_lips, real_points, held.fps, shifts_s, frames=speech,
                        has_audio=has_audio)  # fmt: skip
    check_all = shift_check(shifted_lips, real_points, held.fps, shifts_s, has_audio=has_audio)
    return lips, check, check_all
