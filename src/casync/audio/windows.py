"""The one audio-feature path: a 16 kHz waveform -> one feature window per video frame, the same
numbers for the cache (preprocessing), batch synthesis and streaming.

`FrameFeatures` is fed the audio at once or in pieces; frame j is released only once every sample
its window depends on has arrived, and is computed from exactly those samples. Exact front ends
(mel, Whisper) declare a `Chunking`: chunk k (feature frames [k hop, (k+1) hop)) is a function of
samples [320 k hop - context, 320 (k+1) hop + lookahead) alone, padded past the audio's ends as the
front end says, and computed alone (batched kernels differ in the last bit), so every mode gives
the same features bit for bit. Other front ends (HuBERT) see the whole clip once the audio has
ended; while streaming they run over a sliding context, which only approximates the batch result.
"""

from __future__ import annotations

import numpy as np

from casync.audio.frontend import FEATURE_RATE, HOP, SAMPLE_RATE, Chunking
from casync.audio.pcm import pcm_chunk
from casync.media.audio import SILENCE_DBFS, frame_levels_dbfs


def window_starts(frames: np.ndarray, fps: float, window: int, feature_rate: int = FEATURE_RATE):
    """First feature index of each video frame's window: centred on the frame's mid time
    ((j + 0.5) / fps)."""
    centres = (np.asarray(frames) + 0.5) / fps * feature_rate  # in feature frames
    return np.floor(centres - window / 2 + 0.5).astype(np.int64)


def window_indices(n_frames: int, fps: float, window: int, feature_rate: int, n_features: int):
    """(n_frames, window) feature indices; indices past either end repeat the edge frame."""
    starts = window_starts(np.arange(n_frames), fps, window, feature_rate)
    indices = starts[:, None] + np.arange(window)[None, :]
    return np.clip(indices, 0, max(n_features - 1, 0))


def frame_windows(
    features: np.ndarray, n_frames: int, fps: float, window: int, feature_rate: int = FEATURE_RATE
) -> np.ndarray:
    """features (T, D) -> (n_frames, window, D), same dtype."""
    if len(features) == 0:
        raise ValueError("no audio features: the audio is empty")
    return features[window_indices(n_frames, fps, window, feature_rate, len(features))]


def padded(audio: np.ndarray, a: int, b: int, n_samples: int | None, pad: str, offset: int = 0):
    """Absolute samples [a, b) of `audio` (which starts at absolute `offset`), padded before 0
    and, once the length `n_samples` is known, past its end."""
    index = np.arange(a, b)
    if pad == "reflect":
        index = np.where(index < 0, -index, index)
        if n_samples is not None:
            index = np.where(index > n_samples - 1, 2 * (n_samples - 1) - index, index)
        return audio[index - offset]
    end = n_samples if n_samples is not None else offset + len(audio)
    inside = (index >= 0) & (index < end)
    out = np.zeros(b - a, np.float32)
    out[inside] = audio[index[inside] - offset]
    return out


def encode_chunked(front_end, waveform: np.ndarray) -> np.ndarray:
    """(N,) waveform -> (N // 320 + 1, D) features, chunk by chunk on the front end's schedule."""
    chunking, n = front_end.chunking, len(waveform)
    n_features = n // HOP + 1
    chunks = [
        front_end.encode_chunk(padded(waveform, *chunking.span(k), n, chunking.pad))
        for k in range(-(-n_features // chunking.hop))
    ]
    return np.concatenate(chunks)[:n_features]


class FrameFeatures:
    """Per-video-frame feature windows and silence flags, fed incrementally (`push`, `finish`)."""

    def __init__(
        self,
        front_end,
        fps: float,
        silence_dbfs: float | None = SILENCE_DBFS,
        context_s: float = 2.0,
        lookahead_s: float = 0.5,
    ) -> None:
        self.front_end = front_end
        self.fps = fps
        self.window = int(front_end.window)
        self.silence_dbfs = silence_dbfs
        # Half a window each side of the frame centre: the span the audio window covers.
        self.silence_half = int(round(self.window / 2 / FEATURE_RATE * SAMPLE_RATE))
        chunking: Chunking | None = getattr(front_end, "chunking", None)
        self.exact = chunking is not None
        # Not exact: the whole clip in batch, a sliding context/lookahead while streaming.
        context, lookahead = (
            int(context_s * FEATURE_RATE) * HOP,
            int(lookahead_s * FEATURE_RATE) * HOP,
        )
        self.chunking = chunking or Chunking(1, context, lookahead)
        self._chunks: dict[int, np.ndarray] = {}  # chunk index -> (hop, D) features
        self._whole: np.ndarray | None = None
        self._audio = np.zeros(0, np.float32)
        self._offset = 0  # absolute index of self._audio[0]
        self.n_samples = 0
        self.finished = False

    # -- feeding ---------------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        if self.finished:
            raise RuntimeError("push() after finish()")
        samples = pcm_chunk(samples)  # the chunk contract: 1-D mono, finite, int16 scaled
        self._audio = np.concatenate([self._audio, samples])
        self.n_samples += len(samples)

    def finish(self) -> None:
        self.finished = True
        if self.total_frames() == 0:
            raise ValueError(
                f"the driving audio is {self.n_samples / SAMPLE_RATE * 1000:.0f} ms long: shorter "
                f"than one video frame ({1000 / self.fps:.0f} ms)"
            )
        if self.chunking.pad == "reflect" and self.n_samples <= self.chunking.context:
            raise ValueError(f"the driving audio is too short ({self.n_samples} samples)")

    def release(self, first_pending: int) -> None:
        """Forget audio and features that no frame >= `first_pending` can need."""
        first_feature = int(window_starts([first_pending], self.fps, self.window)[0])
        first_chunk = max(first_feature, 0) // self.chunking.hop
        start = self.chunking.span(first_chunk)[0]
        centre = (first_pending + 0.5) / self.fps * SAMPLE_RATE
        keep_from = int(max(0, min(start, centre - self.silence_half) - HOP))
        for k in [k for k in self._chunks if k < first_chunk]:
            del self._chunks[k]
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
        # Frame j needs the chunk holding its window's last feature and silence audio up to its
        # centre + silence_half; both grow with j, so solve for the last j by a short search.
        j = int(self.n_samples / SAMPLE_RATE * self.fps) + 1
        while j > 0:
            last_feature = window_starts([j - 1], self.fps, self.window)[0] + self.window - 1
            needed = self.chunking.span(max(last_feature, 0) // self.chunking.hop)[1]
            centre = (j - 0.5) / self.fps * SAMPLE_RATE
            if needed <= self.n_samples and centre + self.silence_half <= self.n_samples:
                return j
            j -= 1
        return 0

    # -- per-frame inputs ------------------------------------------------------------------------
    def take(self, j0: int, j1: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames [j0, j1) -> windows (n, window, D) float32 and silent (n,) bool."""
        frames = np.arange(j0, j1)
        n_features = self.n_samples // HOP + 1 if self.finished else np.iinfo(np.int64).max
        indices = window_starts(frames, self.fps, self.window)[:, None] + np.arange(self.window)
        indices = np.clip(indices, 0, n_features - 1)
        t0, t1 = int(indices.min()), int(indices.max())
        features = self._features(t0, t1)  # (t1 - t0 + 1, D)
        return features[indices - t0].astype(np.float32, copy=False), self._silent(frames)

    def _features(self, t0: int, t1: int) -> np.ndarray:
        hop = self.chunking.hop
        if not self.exact:
            return self._approximate(t0, t1)
        for k in range(t0 // hop, t1 // hop + 1):
            if k not in self._chunks:
                a, b = self.chunking.span(k)
                n = self.n_samples if self.finished else None
                segment = padded(self._audio, a, b, n, self.chunking.pad, self._offset)
                self._chunks[k] = self.front_end.encode_chunk(segment)
        features = np.concatenate([self._chunks[k] for k in range(t0 // hop, t1 // hop + 1)])
        return features[t0 - (t0 // hop) * hop :][: t1 - t0 + 1]

    def _approximate(self, t0: int, t1: int) -> np.ndarray:
        if self.finished and (self._whole is not None or self._offset == 0):  # batch: whole clip
            if self._whole is None:
                self._whole = self.front_end(self._audio)
            return self._whole[np.clip(np.arange(t0, t1 + 1), 0, len(self._whole) - 1)]
        a = max(self._offset, t0 * HOP - self.chunking.context)
        a -= a % HOP
        b = min(self.n_samples, (t1 + 1) * HOP + self.chunking.lookahead)
        features = self.front_end(self._audio[a - self._offset : b - self._offset])
        return features[np.clip(np.arange(t0, t1 + 1) - a // HOP, 0, len(features) - 1)]

    def _silent(self, frames: np.ndarray) -> np.ndarray:
        if self.silence_dbfs is None:
            return np.zeros(len(frames), bool)
        half_window_s = self.silence_half / SAMPLE_RATE
        levels = frame_levels_dbfs(
            self._audio, frames, self.fps, half_window_s, SAMPLE_RATE, self._offset
        )
        return levels <= self.silence_dbfs


def cache_windows(front_end, audio: np.ndarray, n_frames: int, fps: float, block: int = 1024):
    """Yield the windows of frames [0, n_frames) in blocks, as `FrameFeatures` gives inference."""
    features = FrameFeatures(front_end, fps, silence_dbfs=None)
    features.push(audio)
    features.finish()
    for start in range(0, n_frames, block):
        end = min(start + block, n_frames)
        yield features.take(start, end)[0]
        features.release(end)
