"""Frames to score: a checkpoint's generations on the frames its training run validated on.

Which frames those are is `CASyncDataModule`'s to say, and `HeldOut` reads them from it: each
source's validation range (scored whole: the sync check, LSE and the plots need contiguous
frames), which of them the DataModule's val set serves (those with a face: the lip-landmark
reference) and each source's closed-mouth training frame. Each frame is generated as inference
generates it: the masked real crop, the mask, the frame's own audio window (or a shifted one, for
the sync check) and the reference inference would use for that frame's source
(`source_references`). The generated mouth region is pasted into the real crop with the hard
mask, so every method is scored on the same pixels outside the mask (the real ones).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm import tqdm

from casync.contract import CropGenerator, LoadedGenerator
from casync.data.cache import SourceCache, SpeakerCache
from casync.data.datamodule import CASyncDataModule
from casync.evaluation.lip_landmarks import LIP_INDICES, LipLandmarks
from casync.evaluation.sync import shift_windows
from casync.face import transform_points
from casync.inference.precision import build_generator
from casync.media.audio import SILENCE_DBFS
from casync.model import CASyncNet

SPLITS = ("val", "test")


class HeldOut:
    """The validation (or test) frames of a `CASyncDataModule`, concatenated in source order: a
    reader over the DataModule's split, which it never re-derives. `val` names the held-out
    ranges scored, whichever split they are."""

    def __init__(self, data: CASyncDataModule, split: str = "val") -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: choose one of {SPLITS}")
        if data.val_set is None:
            data.setup("validate")
        scored = data.val_set if split == "val" else data.test_set
        if scored is None:
            raise ValueError(
                "no test range: the run held none out (data.test_fraction=0); score its "
                "validation range (evaluate.split=val) or train with data.test_fraction > 0"
            )
        self.split = split
        self.sources: list[SourceCache] = scored.sources
        self.val: list[range] = scored.ranges
        self.train: list[range] = data.train_set.ranges
        self.fps = data.fps
        self.closed_mouth = data.closed_mouth_frames()  # the reference each source trains with
        self.validated = scored.index  # (M, 2) (source, frame): those with a face

    def limit(self, max_frames: int) -> HeldOut:
        """A copy scoring at most `max_frames` frames: the start of each source's range, each
        source keeping its share (contiguous: the sync check and correlations need time order)."""
        total = len(self)
        if max_frames <= 0:
            raise ValueError(f"max_frames must be > 0, got {max_frames}")
        if total <= max_frames:
            return self
        limited = copy.copy(self)
        shares = [len(r) * max_frames // total for r in self.val]
        limited.val = [range(r.start, r.start + n) for r, n in zip(self.val, shares, strict=True)]
        return limited

    def __len__(self) -> int:
        return sum(len(frames) for frames in self.val)

    def _gather(self, name: str) -> np.ndarray:
        parts = [np.asarray(getattr(s, name)[f.start : f.stop]) for s, f in self._pairs()]
        return np.concatenate(parts)

    def _pairs(self) -> list[tuple[SourceCache, range]]:
        return list(zip(self.sources, self.val, strict=True))

    def crops(self) -> np.ndarray:
        """(N, S, S, 3) uint8 real crops."""
        return self._gather("crops")

    def masks(self) -> np.ndarray:
        """(N, S, S) uint8, 1 = the region the network regenerates."""
        return self._gather("masks")

    def frames(self) -> np.ndarray:
        """(N, 2) int64: (index in `sources`, frame) of each held-out frame."""
        parts = [
            np.stack([np.full(len(f), i), np.asarray(f)], axis=1) for i, f in enumerate(self.val)
        ]
        return np.concatenate(parts).astype(np.int64).reshape(-1, 2)

    def source_index(self) -> np.ndarray:
        """(N,) int: the index in `sources` of each held-out frame's source."""
        return self.frames()[:, 0]

    def has_face(self) -> np.ndarray:
        """(N,) bool: the held-out frames the DataModule's val set serves (a face was found)."""
        stride = max(s.n_frames for s in self.sources)  # (source, frame) -> one int key

        def keys(pairs: np.ndarray) -> np.ndarray:
            return pairs[:, 0] * stride + pairs[:, 1]

        return np.isin(keys(self.frames()), keys(self.validated))

    def closed_mouth_crops(self) -> np.ndarray:
        """(K, S, S, 3) uint8: each source's closed-mouth training frame, the reference
        `data.reference=closed_mouth` trains that source with."""
        pairs = zip(self.sources, self.closed_mouth, strict=True)
        return np.stack([np.array(s.crops[frame]) for s, frame in pairs])

    def windows(self, shift: int = 0) -> np.ndarray:
        """(N, W, D) float32 audio windows, delayed by `shift` frames (positive = audio late).
        Shifting happens over the whole source, so shifted-in windows are real audio from just
        outside the range; only the source's own ends repeat."""
        parts = [
            shift_windows(np.asarray(s.audio), shift)[f.start : f.stop] for s, f in self._pairs()
        ]
        return np.concatenate(parts).astype(np.float32)

    def tracked_lips(self) -> LipLandmarks:
        """Lip landmarks of the real frames from the preprocessing tracker (full frames, face
        mesh with eyes in view), moved into crop pixels: a reference for the crop detector."""
        lips = np.array(LIP_INDICES)
        points = np.full((len(self), len(lips), 2), np.nan, np.float32)  # (N, 40, 2)
        for k, ((i, j), face) in enumerate(zip(self.frames(), self.has_face(), strict=True)):
            if face:
                source = self.sources[i]
                landmarks = np.asarray(source.landmarks[j])[lips]
                points[k] = transform_points(landmarks, np.asarray(source.transforms[j]))
        return LipLandmarks(points=points, found=~np.isnan(points).any(axis=(1, 2)))

    def speech(self, silence_dbfs: float = SILENCE_DBFS) -> np.ndarray:
        """(N,) bool: frames whose audio window is louder than `silence_dbfs` (the inference
        silence rule). In silence the mouth's pose (breathing, resting) is not set by the audio."""
        return self._gather("levels_dbfs") > silence_dbfs

    def has_shifted_audio(self, shift: int) -> np.ndarray:
        """(N,) bool: frames whose audio `shift` frames away (see `shift_windows`) exists in their
        source. Where it does not, `windows(shift)` repeats the edge window: no real audio."""
        return np.concatenate(
            [
                (np.asarray(f) - shift >= 0) & (np.asarray(f) - shift < s.n_frames)
                for s, f in self._pairs()
            ]
        )

    def frame_times(self) -> np.ndarray:
        """(N,) seconds of each held-out frame within its own source (for plots)."""
        return np.concatenate(
            [np.asarray(f, dtype=np.float64) / self.fps for _, f in self._pairs()]
        )

    def time_ranges(self) -> list[tuple[SourceCache, float, float]]:
        """(source, start s, stop s) of each held-out range."""
        return [(s, f.start / self.fps, f.stop / self.fps) for s, f in self._pairs()]


def held_out_range(
    cache: SpeakerCache,
    val_fraction: float,
    gap: int | None = None,
    test_fraction: float = 0.0,
    split: str = "val",
) -> HeldOut:
    """The frames a run on `cache` with `data.val_fraction`, `data.test_fraction` and `data.gap`
    validated on (`split="val"`) or held out for testing (`split="test"`): that split of the
    `CASyncDataModule` it trained with (the gap decides its training ranges, where the
    closed-mouth reference comes from)."""
    data = CASyncDataModule(
        str(cache.root.parent), [cache.speaker], num_workers=0, val_fraction=val_fraction,
        test_fraction=test_fraction, gap=gap,
    )  # fmt: skip
    held = HeldOut(data, split)
    if len(held) == 0:
        raise ValueError(
            f"no held-out frames in {cache.root} with val_fraction={val_fraction}: "
            "set evaluate.val_fraction to the fraction training held out (e.g. 0.25)"
        )
    return held


def source_references(generator: LoadedGenerator, held: HeldOut) -> tuple[np.ndarray, list[str]]:
    """Per source, the reference inference uses for that video (`LoadedGenerator.reference_for`
    its content hash: the checkpoint's reference of that training source), else the source's
    own closed-mouth training frame -> ((K, S, S, 3) uint8, what each one is)."""
    own = held.closed_mouth_crops()
    crops, used = [], []
    for source, crop in zip(held.sources, own, strict=True):
        shipped = generator.reference_for(source.info["sha256"])
        crops.append(crop if shipped is None else shipped.crop)
        used.append("its closed-mouth training frame" if shipped is None else "the checkpoint's")
    return np.stack(crops), used


def composite(real: np.ndarray, generated: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Paste `generated` (N or 1, S, S, 3) into `real` (N, S, S, 3) where `masks` (N, S, S) is
    set; uint8 out."""
    inside = masks.astype(bool)[..., None]
    return np.where(inside, generated, real).astype(np.uint8)


class HeldOutGenerator:
    """Batched generation of held-out frames, each with its source's reference crop: the fp32
    graph inference runs (`build_generator`: BatchNorm folded, the pointwise fusion) through the
    one generation path, `contract.generate.CropGenerator`, that inference uses too."""

    def __init__(
        self,
        net: CASyncNet,
        references: np.ndarray,
        source_index: np.ndarray,
        device: str = "cpu",
        batch_size: int = 16,
        progress: bool = False,
    ) -> None:
        """`references` (K, S, S, 3) uint8, one per source; `source_index` (N,) picks each
        frame's (`HeldOut.source_index`)."""
        device = torch.device(device)
        self.generate = CropGenerator(build_generator(net, "fp32", device), device)
        self.references = np.ascontiguousarray(references)  # (K, S, S, 3) uint8
        self.source_index = np.asarray(source_index, np.int64)
        self.batch_size, self.progress = batch_size, progress

    def __call__(
        self, real: np.ndarray, masks: np.ndarray, windows: np.ndarray, desc: str = "generate"
    ) -> np.ndarray:
        """real (N, S, S, 3) uint8, masks (N, S, S), windows (N, W, D) -> (N, S, S, 3) uint8,
        the generated mouth region pasted into the real crops (N: all held-out frames)."""
        if len(real) != len(self.source_index):
            raise ValueError(
                f"{len(real)} frames, but references were given for {len(self.source_index)}"
            )
        out = np.empty_like(real)
        starts = range(0, len(real), self.batch_size)
        for start in tqdm(starts, desc=desc, disable=not self.progress, leave=False):
            batch = slice(start, start + self.batch_size)
            references = self.references[self.source_index[batch]]  # (B, S, S, 3)
            pixels = self.generate(real[batch], masks[batch], windows[batch], references)
            out[batch] = composite(real[batch], pixels, masks[batch])
        return out
