"""`CacheDataset`: the frames of some ranges of some sources that show a face, as training
samples (target crop, mask, audio window, optional reference crop; the network masks the crop
itself, through `casync.contract.network_inputs`), read from the
cache's memory maps."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from casync.data.cache import SourceCache


class CacheDataset(Dataset):
    """Frames `ranges[i]` of `sources[i]` that show a face; arrays are opened lazily in each
    worker.

    `fixed_references[i]`, when given, is the reference frame of every sample of source i;
    otherwise each sample's reference is another frame of its range (see `_reference_frame`)."""

    def __init__(
        self,
        sources: list[SourceCache],
        ranges: list[range],
        use_reference: bool = True,
        augment: bool = False,
        *,
        reference_min_gap: int,  # frames (the DataModule's reference_min_gap_s at the cache's fps)
        random_reference: bool = False,
        fixed_references: list[int] | None = None,
    ) -> None:
        if fixed_references is not None and len(fixed_references) != len(sources):
            raise ValueError(
                f"fixed_references needs one frame per source: {len(sources)}, "
                f"got {len(fixed_references)}"
            )
        self.sources, self.ranges = sources, ranges
        self.fixed_references = fixed_references
        self.use_reference, self.augment = use_reference, augment
        self.random_reference = random_reference
        self.reference_min_gap = reference_min_gap
        # Frames without a face hold an interpolated crop of whatever is there: never a target.
        self.index = np.array(
            [
                (s, frame)
                for s, frames in enumerate(ranges)
                for frame in _frames_with_face(sources[s], frames)
            ],
            dtype=np.int64,
        ).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def _reference_frame(self, source: int, frame: int, rng: torch.Generator | None = None) -> int:
        """A frame of the same range at least `reference_min_gap` away: random when
        `random_reference`, else a fixed pseudo-random pick; the farthest end if none is that far."""
        frames, gap = self.ranges[source], self.reference_min_gap
        before = range(frames.start, max(frames.start, min(frame - gap + 1, frames.stop)))
        after = range(max(frame + gap, frames.start), frames.stop)
        n = len(before) + len(after)
        if n == 0:
            return max((frames.start, frames.stop - 1), key=lambda f: abs(f - frame))
        k = (
            int(torch.randint(n, (), generator=rng))
            if self.random_reference
            else (frame * 7919) % n
        )
        return before[k] if k < len(before) else after[k - len(before)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | int]:
        """`key`: an index, or (index, seed) from `EpochSeededSampler`, which makes the sample's
        random choices (reference frame, augmentation) reproducible across resumes."""
        i, rng = (
            (key, None) if isinstance(key, int) else (key[0], torch.Generator().manual_seed(key[1]))
        )
        s, frame = (int(v) for v in self.index[i])
        source = self.sources[s]
        target = torch.from_numpy(np.array(source.crops[frame])).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy(np.array(source.mask)).float()[None]  # (1, H, W)
        sample: dict[str, torch.Tensor | int] = {
            "target": target,  # (3, H, W)
            "mask": mask,
            "audio": torch.from_numpy(np.array(source.audio[frame], dtype=np.float32)),  # (W, D)
            "source": s,
            "frame": frame,
        }
        if self.use_reference:
            ref_frame = (
                self.fixed_references[s]
                if self.fixed_references is not None
                else self._reference_frame(s, frame, rng)
            )
            ref = source.crops[ref_frame]
            sample["reference"] = torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255
        if self.augment:
            _augment(sample, rng)
        return sample


def _frames_with_face(source: SourceCache, frames: range) -> np.ndarray:
    candidates = np.arange(frames.start, frames.stop)
    return candidates[np.asarray(source.face_found, dtype=bool)[candidates]]


def _augment(sample: dict, rng: torch.Generator | None = None) -> None:
    """Same horizontal flip and brightness/contrast jitter on every image of the sample."""
    images = [key for key in ("target", "mask", "reference") if key in sample]
    if torch.rand((), generator=rng) < 0.5:
        for key in images:
            sample[key] = sample[key].flip(-1)
    gain = 1 + 0.2 * (torch.rand((), generator=rng) - 0.5)
    bias = 0.1 * (torch.rand((), generator=rng) - 0.5)
    for key in ("target", "reference"):
        if key in sample:
            sample[key] = (sample[key] * gain + bias).clamp(0, 1)
