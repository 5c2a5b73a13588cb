"""What a checkpoint records so inference can reproduce training: the `GeneratorContract` (the
checkpoint's `casync` entry) and how it is made from the training data (`generator_contract`).

The contract holds the cache's frame rate, crop size, sample rate and crop-box smoothing, the
region mask the network was fed (the cache's `mask.npy`, 1 = regenerate), every training source's
reference crop with that source's id and content hash, and the `describe()` of the front end its
cache's audio windows were made with. Written by `to_extras`, read by `from_extras`; nothing else
derives these settings.

Format 1 shipped one reference and the frame rate; 2 added the sample rate, smoothing and one
reference per source; 3 the front end; 4 the mask. Older formats still load: a format-1
reference names no source, its smoothing is the preprocessing default of its time, and formats
1-3 get the hard region every cache of their time held (`casync.face.stored_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from casync.audio.frontend import SAMPLE_RATE
from casync.face import stored_mask

FORMAT_VERSION = 4  # 2: sample rate, smoothing, a reference per source; 3: front end; 4: mask
FORMAT_1_SMOOTHING = 1.5  # what format-1 checkpoints were preprocessed with (not stored then)
FORMAT_1_FPS = 25.0  # what checkpoints before format 1 were preprocessed with (not stored then)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible with this CASync."""


@dataclass(frozen=True)
class SourceReference:
    """A training source's reference crop (its closed-mouth training frame)."""

    source_id: str | None  # None: a format-1 checkpoint's single reference (names no source)
    sha256: str | None  # the source file's content hash (the cache's `sources[].sha256`)
    crop: np.ndarray  # (S, S, 3) uint8


@dataclass
class GeneratorContract:
    """Everything inference needs to feed the network what training fed it."""

    fps: float
    crop_size: int
    sample_rate: int = SAMPLE_RATE
    smoothing: float = FORMAT_1_SMOOTHING
    references: list[SourceReference] = field(default_factory=list)
    front_end: dict | None = None  # the cache's front-end `describe()` (None before format 3)
    mask: np.ndarray = field(kw_only=True)  # (S, S) uint8, 1 = regenerate: the cache's mask.npy

    def __post_init__(self) -> None:
        self.mask = np.array(self.mask, dtype=np.uint8)  # a copy: never the cache's memory map
        if self.mask.shape != (self.crop_size, self.crop_size) or self.mask.max(initial=0) > 1:
            raise CheckpointError(
                f"the generator's region mask must be ({self.crop_size}, {self.crop_size}) "
                f"zeros and ones (its crop size), got shape {self.mask.shape} and values up to "
                f"{self.mask.max(initial=0)}"
            )

    def to_extras(self) -> dict:
        """The checkpoint's `casync` entry (plain tensors, strings and numbers: weights_only)."""
        references = [
            {"source_id": r.source_id, "sha256": r.sha256, "crop": _tensor(r.crop)}
            for r in self.references
        ]
        return {
            "format": FORMAT_VERSION,
            "fps": float(self.fps),
            "crop_size": int(self.crop_size),
            "sample_rate": int(self.sample_rate),
            "smoothing": float(self.smoothing),
            "references": references,
            "reference": references[0]["crop"] if references else None,  # format-1 readers
            "front_end": None if self.front_end is None else dict(self.front_end),
            "mask": _tensor(self.mask),
        }

    @classmethod
    def from_extras(cls, extras: dict, crop_size: int) -> GeneratorContract:
        """The contract of a checkpoint's `casync` entry (`crop_size`: the network's, for
        checkpoints that predate the entry)."""
        version = extras.get("format", 1)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"the checkpoint's generator contract is format {version}; this CASync reads "
                f"formats 1-{FORMAT_VERSION}: upgrade CASync to use it"
            )
        size = int(extras.get("crop_size", crop_size))
        mask = extras["mask"].numpy() if version >= 4 else stored_mask(size)
        if version < 2:  # one reference, no smoothing, 16 kHz
            ref = extras.get("reference")
            refs = [] if ref is None else [SourceReference(None, None, _crop(ref))]
            return cls(float(extras.get("fps", FORMAT_1_FPS)), size, references=refs, mask=mask)
        references = [
            SourceReference(r["source_id"], r["sha256"], _crop(r["crop"]))
            for r in extras["references"]
        ]
        return cls(
            float(extras["fps"]),
            size,
            int(extras["sample_rate"]),
            float(extras["smoothing"]),
            references,
            extras.get("front_end"),  # format 3
            mask=mask,
        )


def default_contract(crop_size: int) -> GeneratorContract:
    """The contract of a hand-made network (tests, exports): the preprocessing defaults of 25
    fps and smoothing 1.5 at 16 kHz, the hard region mask, no reference."""
    return GeneratorContract(FORMAT_1_FPS, crop_size, mask=stored_mask(crop_size))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))


def _crop(tensor: torch.Tensor) -> np.ndarray:
    crop = tensor.numpy()
    if crop.shape[0] == 3 and crop.shape[-1] != 3:
        crop = crop.transpose(1, 2, 0)  # (3, S, S) -> (S, S, 3)
    return np.ascontiguousarray(crop)


def generator_contract(data) -> GeneratorContract:
    """The contract of a run trained on `data` (a `CASyncDataModule`): its caches' settings and
    region mask, and each source's closed-mouth training frame, the reference
    `data.reference=closed_mouth` trains with."""
    keys = ("fps", "crop_size", "sample_rate", "smoothing")
    settings = {c.speaker: {k: c.meta["settings"][k] for k in keys} for c in data.caches}
    first = next(iter(settings.values()))
    if any(s != first for s in settings.values()):
        raise ValueError(
            f"the speakers' caches were preprocessed with different settings {settings}: "
            "preprocess them all with the same preprocess.fps/crop_size/sample_rate/smoothing"
        )
    masks = {source.id: np.asarray(source.mask) for source in data.sources}
    mask = next(iter(masks.values()))
    if any(not np.array_equal(m, mask) for m in masks.values()):
        raise ValueError(
            f"the training sources' mask.npy differ ({sorted(masks)}): a network is fed one "
            "region mask; preprocess every source with the same CASync"
        )
    frames = data.closed_mouth_frames()
    references = [
        SourceReference(source.id, source.info["sha256"], np.array(source.crops[frame]))
        for source, frame in zip(data.sources, frames, strict=True)
    ]
    return GeneratorContract(
        float(first["fps"]), int(first["crop_size"]), int(first["sample_rate"]),
        float(first["smoothing"]), references, dict(data.audio_meta), mask=mask,
    )  # fmt: skip
