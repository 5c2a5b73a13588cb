"""`CASyncDataModule`: streams training samples from one or more speakers' caches via memory maps.

Each sample (`casync.data.dataset`) is a target crop, its mask, the audio window of the frame and
(optionally) a reference crop: by default the source's closed-mouth training frame, the one
inference uses (see `casync.data.reference`); with `reference="random"`, a random frame of the
same source and split at least `reference_min_gap_s` away.
"""

from __future__ import annotations

import itertools
import math
import os

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from casync.data.cache import SourceCache, SpeakerCache, open_cache
from casync.data.dataset import CacheDataset
from casync.data.reference import closed_mouth_frame
from casync.data.split import split_three

REFERENCE_MODES = ("closed_mouth", "random")


class EpochSeededSampler(DistributedSampler):
    """A shuffle that is a function of (seed, epoch) only, so a run resumed from a checkpoint sees
    the same order as an uninterrupted one. It yields (index, sample seed) keys, so each sample's
    random choices are reproducible too. `current_epoch` reads the trainer's epoch (Lightning's
    own `set_epoch` count runs one ahead after a resume). Under DDP each of `num_replicas` ranks
    takes every num_replicas-th key (padded as DistributedSampler pads, which is why it is one:
    Lightning keeps it instead of swapping in its own). `resume(epoch, n)` skips the n samples
    of that epoch (per rank) a mid-epoch checkpoint had already trained on."""

    def __init__(
        self,
        data_source: Dataset,
        current_epoch=None,
        seed: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True)
        self.data_source, self.base_seed, self.current_epoch = data_source, seed, current_epoch
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, samples_done: int) -> None:
        self._resume = (epoch, samples_done)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        seed = self.base_seed
        seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        epoch = self.current_epoch() if self.current_epoch is not None else self.epoch
        generator = torch.Generator().manual_seed(seed + epoch)
        n = len(self.data_source)
        order = torch.randperm(n, generator=generator).tolist()
        seeds = torch.randint(2**31 - 1, (n,), generator=generator).tolist()
        keys = list(zip(order, seeds, strict=True))
        keys = (keys * math.ceil(self.total_size / max(n, 1)))[: self.total_size]  # equal shares
        done = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None  # once: the next epoch starts from its beginning
        yield from itertools.islice(keys[self.rank :: self.num_replicas], done, None)


class CASyncDataModule(L.LightningDataModule):
    """Speakers' caches -> train/val DataLoaders of dict batches (see docs/DESIGN.md).

    Split per source by time (`casync.data.split`): test is the last `test_fraction` of each
    source, validation the `val_fraction` before it, training the rest; `gap` frames (default: the
    audio window) separate them. Validation selects checkpoints and sweep trials; the test range
    is never trained or validated on (`casync.evaluate` reports on it). Under DDP Lightning
    shards the loaders."""

    def __init__(
        self,
        cache_dir: str,
        speakers: list[str],
        batch_size: int = 16,
        num_workers: int = 2,
        val_fraction: float = 0.25,
        test_fraction: float = 0.0,
        use_reference: bool = True,
        augment: bool = True,
        gap: int | None = None,
        reference: str = "closed_mouth",
        reference_min_gap_s: float = 1.0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not speakers:
            raise ValueError("data.speakers is empty: name at least one preprocessed speaker")
        if reference not in REFERENCE_MODES:
            raise ValueError(f"data.reference={reference!r}: choose one of {REFERENCE_MODES}")
        self._caches: list[SpeakerCache] | None = None  # opened on first use, not at instantiate
        self.train_set: CacheDataset | None = None
        self.val_set: CacheDataset | None = None
        self.test_set: CacheDataset | None = None  # None without a test range
        self._resume_at: dict | None = None  # from a checkpoint's state_dict(), used once

    @property
    def caches(self) -> list[SpeakerCache]:
        if self._caches is None:
            speakers = list(self.hparams.speakers)
            caches = [open_cache(self.hparams.cache_dir, speaker) for speaker in speakers]
            audio = [cache.audio_meta for cache in caches]
            if any(meta != audio[0] for meta in audio):
                raise ValueError(
                    "the speakers' caches were made with different audio front ends "
                    f"({dict(zip(speakers, audio, strict=True))}): preprocess them all with the "
                    "same audio=..."
                )
            self._caches = caches
        return self._caches

    @property
    def audio_meta(self) -> dict:
        """The audio front end's `describe()` (name, feature_dim, window, ...), same for all."""
        return self.caches[0].audio_meta

    @property
    def fps(self) -> float:
        return float(self.caches[0].meta["fps"])

    @property
    def sources(self) -> list[SourceCache]:
        """All sources of all speakers, in order; batch["source"] indexes this list."""
        return [source for cache in self.caches for source in cache.sources]

    def split(self) -> tuple[list[range], list[range]]:
        """-> (train ranges, validation ranges), one per source."""
        train, val, _ = self.split_three()
        return train, val

    def split_three(self) -> tuple[list[range], list[range], list[range]]:
        """-> (train, validation, test) ranges, one of each per source."""
        gap = self.hparams.gap if self.hparams.gap is not None else self.audio_meta["window"]
        fractions = (self.hparams.val_fraction, self.hparams.test_fraction)
        ranges = [split_three(s.n_frames, *fractions, gap) for s in self.sources]
        return tuple([r[i] for r in ranges] for i in range(3))

    def closed_mouth_frames(self) -> list[int]:
        """Per source, its training range's closed-mouth frame: the reference inference uses."""
        train, _ = self.split()
        return [closed_mouth_frame(s, r) for s, r in zip(self.sources, train, strict=True)]

    def setup(self, stage: str | None = None) -> None:
        train, val, test = self.split_three()
        gap = round(self.hparams.reference_min_gap_s * self.fps)
        fixed = None
        if self.hparams.use_reference and self.hparams.reference == "closed_mouth":
            fixed = self.closed_mouth_frames()  # validation too: it then scores what ships
        common = {
            "use_reference": self.hparams.use_reference,
            "reference_min_gap": gap,
            "fixed_references": fixed,
        }
        self.train_set = CacheDataset(
            self.sources, train, augment=self.hparams.augment, random_reference=True, **common
        )
        self.val_set = CacheDataset(self.sources, val, augment=False, **common)
        if any(len(frames) for frames in test):
            self.test_set = CacheDataset(self.sources, test, augment=False, **common)

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def state_dict(self) -> dict:
        """Lightning stores this in every checkpoint: how far into its epoch training was, so a
        mid-epoch `last.ckpt` resumes with the batches that were next (see EpochSeededSampler)."""
        if self.trainer is None:
            return {}
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self.trainer.current_epoch, "batches_done": batches}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_at = state_dict or None

    def _loader(self, dataset: CacheDataset, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        ranks = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = EpochSeededSampler(dataset, self._current_epoch, None, *ranks) if train else None
        if sampler is not None and self._resume_at:
            done = self._resume_at["batches_done"] * self.hparams.batch_size
            sampler.resume(self._resume_at["epoch"], done)
            self._resume_at = None
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            drop_last=train and len(dataset) >= self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.hparams.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return self._loader(self.val_set, train=False)
