"""Audio-video sync as a page receives it, measured on its MediaRecorder's webm (the browser
test and `benchmarks/live_sync_bench.py`).

The source video carries its own frame index, drawn as black/white squares along its top edge;
the server's frames are tapped as they leave (tick, source frame, audio, talking). A received
frame's mark names its source frame, and so its tick (the idle loop's order); that tick's sound
is found in the received audio by correlation, locally (the browser's jitter buffer stretches
audio, so no single lag holds for a whole recording). The offset is when the frame is shown
minus when its sound is heard: positive = the mouth late, negative = the mouth early.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.live.tracks import SessionOutput

MARK_BITS, MARK_PX = 7, 16  # the source frame's index, drawn as 7 squares on top
SEARCH_S, CONTEXT_S = 0.5, 0.2  # a tick's sound (+- CONTEXT_S) is searched +- SEARCH_S around


@dataclass
class SentFrame:
    tick: int
    source_index: int
    audio: np.ndarray  # (samples_per_frame,) int16
    talking: bool


def tapped_output(sent: list[SentFrame]) -> type[SessionOutput]:
    """A `SessionOutput` that also appends every frame it is handed to `sent` (install it as
    `casync.live.server.SessionOutput`)."""

    class Tapped(SessionOutput):
        def put(self, frame) -> None:
            sent.append(
                SentFrame(frame.tick, frame.source_index, frame.audio.copy(), frame.talking)
            )
            super().put(frame)

    return Tapped


def marked(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame with its own index in squares along its top edge (away from the face)."""
    out = []
    for index, frame in enumerate(frames):
        frame = frame.copy()
        for bit in range(MARK_BITS):
            square = frame[:MARK_PX, bit * MARK_PX : (bit + 1) * MARK_PX]
            square[:] = 255 if (index >> bit) & 1 else 0
        out.append(frame)
    return out


def read_mark(image: np.ndarray) -> int:
    inner = slice(3, MARK_PX - 3)
    squares = [image[inner, bit * MARK_PX :][:, inner] for bit in range(MARK_BITS)]
    return sum(int(square.mean() > 128) << bit for bit, square in enumerate(squares))


def webm_media(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(video frame times s, their marks, 16 kHz mono audio, the audio's start time s)."""
    import av
    import soxr

    times, marks, audio, audio_start, rate = [], [], [], None, None
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                times.append(float(frame.time))
                marks.append(read_mark(frame.to_ndarray(format="rgb24")))
            else:
                audio_start = float(frame.time) if audio_start is None else audio_start
                audio.append(frame.to_ndarray().astype(np.float32).mean(axis=0))
                rate = frame.sample_rate
    if not times or not audio:
        raise AssertionError("the page recorded no video or no audio")
    heard = soxr.resample(np.concatenate(audio), rate, SAMPLE_RATE)
    return np.array(times), np.array(marks), heard, audio_start


def best_lag(received: np.ndarray, sent: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation) of the best match: received[lag + i] ~ sent[i], the
    correlation normalised over the matched stretch (1.0 = the same waveform, any gain)."""
    size = 1 << int(np.ceil(np.log2(len(received) + len(sent))))
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size))
    correlation = np.fft.irfft(spectrum, size)[: len(received) - len(sent) + 1]
    energy = np.concatenate([[0.0], np.cumsum(received.astype(np.float64) ** 2)])
    stretch = np.sqrt(energy[len(sent) :] - energy[: -len(sent)])
    normalised = correlation / (stretch * np.linalg.norm(sent) + 1e-9)
    lag = int(np.argmax(normalised))
    return lag, float(normalised[lag])


def rough_lag(received: np.ndarray, sent: np.ndarray) -> int:
    """The lag of the plain cross-correlation's peak (received[lag + i] ~ sent[i]): where to
    look; only local matches are exact."""
    size = 1 << int(np.ceil(np.log2(len(received) + len(sent))))
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size))
    lag = int(np.argmax(np.abs(np.fft.irfft(spectrum, size))))
    return lag - size if lag > size // 2 else lag


def frame_ticks(
    times: np.ndarray, marks: np.ndarray, source_of_tick: np.ndarray, first_guess: float
) -> np.ndarray:
    """The tick each received frame shows. Its mark names the source frame; the next frame
    shows the first later tick whose source frame is the one marked on it, within the ticks its
    time allows (a few more when frames were dropped); -1 where none is. The first frame's
    tick: of the ticks that showed its source frame, the one whose run places most frames,
    then the nearest to `first_guess`."""

    def follow(first: int) -> np.ndarray:
        ticks, previous, previous_at = [first], first, times[0]
        for at, mark in zip(times[1:], marks[1:], strict=True):
            reach = 5 + int(round((at - previous_at) * 25))
            steps = np.flatnonzero(source_of_tick[previous + 1 : previous + 1 + reach] == mark)
            if len(steps) == 0:
                ticks.append(-1)
                continue
            previous, previous_at = previous + int(steps[0]) + 1, at
            ticks.append(previous)
        return np.array(ticks)

    runs = [follow(start) for start in np.flatnonzero(source_of_tick == marks[0])]
    if not runs:
        raise AssertionError(f"the first frame's mark {marks[0]} names no frame that was sent")
    return min(runs, key=lambda run: (int((run < 0).sum()), abs(run[0] - first_guess)))


@dataclass
class SyncMeasure:
    offsets_ms: np.ndarray  # per placed talking frame: shown - heard
    frames: int  # received
    placed: int  # frames whose tick was read

    def summary(self) -> str:
        p10, p50, p90 = np.percentile(self.offsets_ms, [10, 50, 90])
        return (
            f"video - audio: median {p50:.0f} ms, p10 {p10:.0f}, p90 {p90:.0f} over "
            f"{len(self.offsets_ms)} talking frames ({self.placed} of {self.frames} placed)"
        )


def measure_sync(data: bytes, sent: list[SentFrame]) -> SyncMeasure:
    """The offsets of the webm `data` against what the server sent (`sent`: contiguous ticks)."""
    times, marks, heard, audio_start = webm_media(data)
    first_tick = sent[0].tick
    if [f.tick for f in sent] != list(range(first_tick, first_tick + len(sent))):
        raise AssertionError("the tapped frames are not contiguous ticks")
    spf = len(sent[0].audio)
    source_of_tick = np.array([f.source_index for f in sent])
    talking = np.array([f.talking for f in sent])
    sound = np.concatenate([f.audio for f in sent]).astype(np.float32) / 32767
    lag = rough_lag(heard, sound)
    first_guess = ((times[0] - audio_start) * SAMPLE_RATE - lag) / spf
    shown = frame_ticks(times, marks, source_of_tick, first_guess)
    context, search = int(CONTEXT_S * SAMPLE_RATE), int(SEARCH_S * SAMPLE_RATE)
    offsets = []
    for at, k in zip(times, shown, strict=True):
        if k < 0 or not talking[k]:
            continue
        start = max(k * spf - context, 0)  # this tick's sound, with context either side
        part = sound[start : k * spf + context]
        first = max(start + lag - search, 0)
        local, strength = best_lag(heard[first : first + len(part) + 2 * search], part)
        if strength < 0.6:
            continue
        heard_at = audio_start + (first + local + k * spf - start) / SAMPLE_RATE
        offsets.append((at - heard_at) * 1000)
    return SyncMeasure(np.array(offsets), len(times), int((shown >= 0).sum()))
