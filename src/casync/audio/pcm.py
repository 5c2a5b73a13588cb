"""The contract for audio that arrives in pieces (`Synthesizer.stream`, `FrameFeatures.push`, the
live server): what a chunk may be, and how it becomes 16 kHz mono float32.

A chunk is a 1-D array of mono samples at the front end's rate (16 kHz); a column `(N, 1)` is
mono too. Unambiguous encodings are converted: int16 is scaled by 1/32768, float64 is cast to
float32. Everything else is refused with a `PCMError` that says what was sent and what to do:
more than one channel (interleaving them would double the length, and the frame count with it),
other integer types, non-finite samples (NaN turns the mouth into a flat blob), float samples
far past full scale (integer PCM sent as floats), and a declared rate that is not 16 kHz.
"""

from __future__ import annotations

import numpy as np

from casync.audio.frontend import SAMPLE_RATE

# Float PCM is in [-1, 1]; a little past it is a hot mix, far past it integer samples as floats.
MAX_FLOAT_PEAK = 2.0


class PCMError(ValueError):
    """An audio chunk that is not 16 kHz mono PCM of a declared type."""


def check_rate(sample_rate: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise PCMError(
            f"audio at {sample_rate} Hz: chunks must be {SAMPLE_RATE} Hz mono; resample first "
            f"(e.g. soxr.resample(chunk, {sample_rate}, {SAMPLE_RATE}))"
        )


def pcm_chunk(chunk: object) -> np.ndarray:
    """A chunk as (N,) float32 in [-1, 1]-ish, or PCMError (see the module doc)."""
    samples = np.asarray(chunk)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1:
        hint = " (stereo? mix it to mono first: chunk.mean(axis=1))" if samples.ndim == 2 else ""
        raise PCMError(
            f"an audio chunk of shape {samples.shape}: chunks are 1-D mono samples{hint}"
        )
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if samples.dtype not in (np.float32, np.float64):
        raise PCMError(
            f"an audio chunk of dtype {samples.dtype}: send int16 PCM or float32 in [-1, 1]"
        )
    samples = samples.astype(np.float32, copy=False)
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise PCMError(
            f"an audio chunk holds {int((~finite).sum())} non-finite samples (the first at index "
            f"{bad}: {samples[bad]}): send finite PCM"
        )
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > MAX_FLOAT_PEAK:
        raise PCMError(
            f"an audio chunk of float samples peaks at {peak:g}: float PCM is in [-1, 1] (integer "
            "samples sent as floats? send them as int16, or divide by 32768)"
        )
    return samples
