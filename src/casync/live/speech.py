"""Queued speech of one live session: pushed 16 kHz PCM -> per-frame audio windows, the frame's
own 40 ms of samples for playback, and when that audio arrived (for latency).

An `Utterance` is one run of pushed speech. Its frames are released in order, each as soon as
`FrameFeatures` has every sample its window needs (~115 ms past the frame centre with log-mel),
or all of them once the speech is `finish`ed (end of speech, or no push for a while).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.audio.windows import FrameFeatures


@dataclass
class SpeechFrame:
    index: int  # frame of the utterance
    window: np.ndarray  # (W, D) float32 audio features
    silent: bool  # its audio span is below the silence threshold: the mouth rests
    audio: np.ndarray  # (samples_per_frame,) float32: what plays with this frame
    arrived: float  # when the last sample of its audio was pushed (clock seconds)


class Utterance:
    def __init__(self, front_end, fps: float, silence_dbfs: float | None, now: float) -> None:
        self.fps = fps
        self.features = FrameFeatures(front_end, fps, silence_dbfs)
        self._pcm = np.zeros(0, np.float32)  # samples not yet played; _pcm[0] is _played
        self._played = 0
        self._pushes: list[int] = []  # cumulative sample count after each push
        self._times: list[float] = []  # ... and when it arrived
        self.next = 0  # the next frame to show
        self.last_push = now

    def push(self, samples: np.ndarray, now: float) -> None:
        """`samples`: (N,) float32 already checked (`casync.audio.pcm.pcm_chunk`)."""
        self.features.push(samples)
        self._pcm = np.concatenate([self._pcm, samples])
        self._pushes.append(self.features.n_samples)
        self._times.append(now)
        self.last_push = now

    @property
    def finished(self) -> bool:
        return self.features.finished

    def finish(self) -> bool:
        """No more audio will come. False when it held less than one frame (nothing to show)."""
        if self.finished:
            return True
        try:
            self.features.finish()
        except ValueError:  # shorter than a frame (or than the front end's context)
            self.next = 0
            self._pcm = np.zeros(0, np.float32)
            return False
        return True

    def done(self) -> bool:
        return self.finished and self.next >= (self.features.total_frames() or 0)

    def ready(self) -> bool:
        """Whether the next frame's inputs are all here."""
        return self.features.n_ready() > self.next

    def take(self) -> SpeechFrame:
        """The next frame (call only when `ready()`)."""
        j = self.next
        windows, silent = self.features.take(j, j + 1)
        self.features.release(j + 1)
        a, b = self._bounds(j), self._bounds(j + 1)
        audio = np.zeros(b - a, np.float32)
        played = self._pcm[: b - a]
        audio[: len(played)] = played
        self._pcm = self._pcm[b - a :]
        self._played = b
        last = min(b, self.features.n_samples)
        push = min(bisect.bisect_left(self._pushes, last), len(self._times) - 1)
        arrived = self._times[push]
        del self._pushes[:push], self._times[:push]  # a microphone pushes forever: keep it flat
        self.next += 1
        return SpeechFrame(j, windows[0], bool(silent[0]), audio, arrived)

    def _bounds(self, j: int) -> int:
        return int(round(j * SAMPLE_RATE / self.fps))

    def queued_s(self) -> float:
        """Seconds of pushed audio not yet played."""
        return len(self._pcm) / SAMPLE_RATE
