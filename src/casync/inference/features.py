"""Driving audio -> per-video-frame feature windows and silence flags, fed incrementally.

One class serves both batch synthesis (all audio pushed at once) and streaming (pushed in chunks):
frame j is released only once every sample its window depends on has arrived, and its window is
computed from exactly those samples, so the two modes give the same numbers bit for bit.

With the mel front end a feature frame t is the STFT of samples [320 t - 400, 320 t + 400) of the
reflect-padded signal (`center=True`), so frame j (centred at (j + 0.5) / fps) needs audio up to
about 115 ms past its centre: window / 2 feature frames (100 ms) + half an STFT window (25 ms) -
half a hop. Other front ends (HuBERT) see the whole clip in batch mode; streaming runs them over a
sliding context (`context_s` back, `lookahead_s` ahead), which only approximates the batch
features since HuBERT's attention and normalisation span its whole input.
"""

from __future__ import annotations

import numpy as np
import torch

from casync.audio.frontend import FEATURE_RATE, SAMPLE_RATE, MelFrontEnd
from casync.media.audio import frame_levels_dbfs

HOP = SAMPLE_RATE // FEATURE_RATE  # 320 samples per feature frame


class FrameFeatures:
    def __init__(
        self,
        front_end,
        fps: float = 25.0,
        silence_db: float | None = -50.0,
        context_s: float = 2.0,
        lookahead_s: float = 0.5,
    ) -> None:
        self.front_end = front_end
        self.fps = fps
        self.window = int(front_end.window)
        self.silence_db = silence_db
        self.exact = isinstance(front_end, MelFrontEnd)
        # Half a window each side of the frame centre: the span the audio window covers.
        self.silence_half = int(round(self.window / 2 / FEATURE_RATE * SAMPLE_RATE))
        if self.exact:
            self.half_fft = front_end.n_fft // 2
            self._mel = _uncentred(front_end)
            self._cache: dict[int, np.ndarray] = {}  # feature index -> (D,) log-mel
        else:
            self.half_fft = 0
            self.context = int(context_s * FEATURE_RATE) * HOP
            self.lookahead = int(lookahead_s * FEATURE_RATE) * HOP
            self._whole: np.ndarray | None = None
        self._audio = np.zeros(0, np.float32)
        self._offset = 0  # absolute index of self._audio[0]
        self.n_samples = 0
        self.finished = False

    # -- feeding ---------------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        if self.finished:
            raise RuntimeError("push() after finish()")
        samples = np.asarray(samples, np.float32).reshape(-1)
        self._audio = np.concatenate([self._audio, samples])
        self.n_samples += len(samples)

    def finish(self) -> None:
        self.finished = True
        if self.total_frames() == 0:
            raise ValueError(
                f"the driving audio is {self.n_samples / SAMPLE_RATE * 1000:.0f} ms long: shorter "
                f"than one video frame ({1000 / self.fps:.0f} ms)"
            )
        if self.exact and self.n_samples <= self.half_fft:
            raise ValueError(f"the driving audio is too short ({self.n_samples} samples)")

    def release(self, first_pending: int) -> None:
        """Forget audio that no frame >= `first_pending` can need."""
        centre = (first_pending + 0.5) / self.fps * FEATURE_RATE
        start = np.floor(centre - self.window / 2 + 0.5) * HOP - self.half_fft
        keep_from = int(max(0, min(start, centre * HOP - self.silence_half) - HOP))
        if not self.exact:
            keep_from = max(0, keep_from - self.context)
        if self.exact:
            oldest = (keep_from + self.half_fft) // HOP
            for t in [t for t in self._cache if t < oldest]:
                del self._cache[t]
        if keep_from > self._offset:
            self._audio = self._audio[keep_from - self._offset :]
            self._offset = keep_from

    # -- what is ready ---------------------------------------------------------------------------
    def total_frames(self) -> int | None:
        """The output length once the audio has ended (duration * fps, rounded), else None."""
        return int(round(self.n_samples / SAMPLE_RATE * self.fps)) if self.finished else None

    def n_ready(self) -> int:
        """How many leading frames have all their inputs final."""
        if self.finished:
            return self.total_frames()
        # Frame j needs features up to start_j + window - 1 and silence audio up to its centre
        # + silence_half; both grow with j, so solve for the last j by a short search.
        margin = self.half_fft if self.exact else self.lookahead
        estimate = int(self.n_samples / SAMPLE_RATE * self.fps) + 1
        j = estimate
        while j > 0:
            last_feature = self._starts(np.array([j - 1]))[0] + self.window - 1
            centre = (j - 0.5) / self.fps * SAMPLE_RATE
            if (
                last_feature * HOP + margin <= self.n_samples
                and centre + self.silence_half <= self.n_samples
            ):
                return j
            j -= 1
        return 0

    # -- per-frame inputs ------------------------------------------------------------------------
    def take(self, j0: int, j1: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames [j0, j1) -> windows (n, window, D) float32 and silent (n,) bool."""
        frames = np.arange(j0, j1)
        n_features = self.n_samples // HOP + 1 if self.finished else np.iinfo(np.int64).max
        indices = self._starts(frames)[:, None] + np.arange(self.window)[None, :]
        indices = np.clip(indices, 0, n_features - 1)
        t0, t1 = int(indices.min()), int(indices.max())
        features = self._features(t0, t1)  # (t1 - t0 + 1, D)
        return features[indices - t0], self._silent(frames)

    def _starts(self, frames: np.ndarray) -> np.ndarray:
        # The same arithmetic as casync.audio.windows.window_indices, frame by frame.
        centres = (frames + 0.5) / self.fps * FEATURE_RATE
        return np.floor(centres - self.window / 2 + 0.5).astype(np.int64)

    def _samples(self, a: int, b: int) -> np.ndarray:
        """Absolute samples [a, b), reflected at both ends as torch's `center=True` pads."""
        index = np.arange(a, b)
        index = np.where(index < 0, -index, index)
        if self.finished:
            last = self.n_samples - 1
            index = np.where(index > last, 2 * last - index, index)
        return self._audio[index - self._offset]

    def _features(self, t0: int, t1: int) -> np.ndarray:
        if self.exact:
            return np.stack([self._mel_frame(t) for t in range(t0, t1 + 1)])
        if self.finished and self._offset == 0:  # batch mode: the whole clip at once, once
            if self._whole is None:
                self._whole = self.front_end(self._audio)
            return self._whole[np.clip(np.arange(t0, t1 + 1), 0, len(self._whole) - 1)]
        a = max(self._offset, t0 * HOP - self.context)
        a -= a % HOP
        b = min(self.n_samples, (t1 + 1) * HOP + self.lookahead)
        features = self.front_end(self._audio[a - self._offset : b - self._offset])
        return features[np.clip(np.arange(t0, t1 + 1) - a // HOP, 0, len(features) - 1)]

    def _mel_frame(self, t: int) -> np.ndarray:
        """One log-mel frame, computed alone and cached: the numbers cannot depend on how many
        frames were computed together (batched FFT/GEMM kernels differ in the last bit)."""
        if t not in self._cache:
            segment = self._samples(t * HOP - self.half_fft, t * HOP + self.half_fft)
            with torch.inference_mode():
                mel = self._mel(torch.from_numpy(segment))[:, 0]  # (n_mels,)
                self._cache[t] = torch.log(mel.clamp_min(1e-5)).numpy()
        return self._cache[t]

    def _silent(self, frames: np.ndarray) -> np.ndarray:
        if self.silence_db is None:
            return np.zeros(len(frames), bool)
        half_window_s = self.silence_half / SAMPLE_RATE
        levels = frame_levels_dbfs(
            self._audio, frames, self.fps, half_window_s, SAMPLE_RATE, self._offset
        )
        return levels <= self.silence_db


def _uncentred(front_end: MelFrontEnd):
    """The front end's mel transform without its own padding (we pad, reflecting, ourselves)."""
    import torchaudio

    t = front_end.transform
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=t.sample_rate,
        n_fft=t.n_fft,
        win_length=t.win_length,
        hop_length=t.hop_length,
        n_mels=t.n_mels,
        center=False,
    )
