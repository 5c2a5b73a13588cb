"""CASyncDataModule on a real cache (of grid_s1_8s.mp4): batch contents, the time split,
references, workers, combining speakers, and clear errors for missing or stale caches."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from casync.contract import generator_contract
from casync.data import CacheError, CASyncDataModule, open_cache, split_ranges
from casync.data.reference import mouth_opening


def test_split_is_contiguous_with_a_gap():
    train, val = split_ranges(200, 0.25, gap=10)
    assert (train, val) == (range(0, 140), range(150, 200))  # the 8 s clip: last 2 s held out
    assert split_ranges(200, 0.0, gap=10) == (range(0, 200), range(200, 200))
    assert split_ranges(8, 0.5, gap=10) == (range(0, 0), range(4, 8))
    with pytest.raises(ValueError, match="val_fraction"):
        split_ranges(100, 1.0, 5)


def test_batches_with_workers_are_the_cached_samples(s1_cache):
    root, speaker = s1_cache
    dm = CASyncDataModule(
        str(root), [speaker], batch_size=8, num_workers=2, augment=False, reference="random"
    )
    assert dm.audio_meta["name"] == "mel" and dm.audio_meta["feature_dim"] == 80
    dm.setup("fit")
    source = open_cache(root, speaker).sources[0]
    train_frame_of = {source.crops[i].tobytes(): i for i in range(140)}
    seen_train = []
    for batch in dm.train_dataloader():
        assert batch["target"].shape == (8, 3, 160, 160) and batch["mask"].shape == (8, 1, 160, 160)
        assert batch["audio"].shape == (8, 10, 80) and batch["audio"].dtype == torch.float32
        frames = batch["frame"].numpy()
        seen_train += frames.tolist()
        target = torch.from_numpy(source.crops[frames]).permute(0, 3, 1, 2).float() / 255
        assert torch.equal(batch["target"], target)
        assert torch.equal(
            batch["audio"], torch.from_numpy(source.audio[frames].astype(np.float32))
        )
        ref_crops = (batch["reference"] * 255).round().byte().permute(0, 2, 3, 1).numpy()
        refs = [train_frame_of[crop.tobytes()] for crop in ref_crops]  # same source, train split
        assert all(abs(r - f) >= 25 for r, f in zip(refs, frames, strict=True))
    assert len(seen_train) == 136 and set(seen_train) <= set(range(140))  # drop_last, shuffled
    val = [batch["frame"] for batch in dm.val_dataloader()]
    assert torch.cat(val).tolist() == list(range(150, 200))


def test_closed_mouth_reference_is_the_one_inference_ships(s1_cache):
    """Training and validation see the reference the checkpoint ships: the training range's frame
    with the most closed mouth (never a held-out frame)."""
    root, speaker = s1_cache
    dm = CASyncDataModule(str(root), [speaker], batch_size=8, num_workers=0, augment=False)
    dm.setup("fit")
    source = open_cache(root, speaker).sources[0]
    (frame,) = dm.closed_mouth_frames()
    opening = mouth_opening(np.asarray(source.landmarks[:140], dtype=np.float32))
    assert frame in range(140) and opening[frame] == opening.min()
    shipped = generator_contract(dm).references[0].crop  # what the checkpoint carries
    np.testing.assert_array_equal(shipped, source.crops[frame])
    expected = torch.from_numpy(shipped).permute(2, 0, 1).float() / 255
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert all(torch.equal(ref, expected) for ref in batch["reference"])
    with pytest.raises(ValueError, match="data.reference='nearest'"):
        CASyncDataModule(str(root), [speaker], 8, 0, reference="nearest")


def test_augmentation_keeps_inputs_consistent(s1_cache):
    dm = CASyncDataModule(str(s1_cache[0]), [s1_cache[1]], batch_size=4, num_workers=0)
    dm.setup("fit")
    torch.manual_seed(0)
    samples = [dm.train_set[i] for i in range(12)]
    crops = open_cache(*s1_cache).sources[0].crops
    flipped = 0
    for sample in samples:
        assert sample["target"].min() >= 0 and sample["target"].max() <= 1
        plain = torch.from_numpy(np.array(crops[sample["frame"]])).permute(2, 0, 1).float() / 255
        unflipped = (sample["target"] - plain).abs().mean()
        mirrored = (sample["target"] - plain.flip(-1)).abs().mean()
        flipped += int(mirrored < unflipped)
    assert 0 < flipped < 12


def test_combined_speakers_and_mismatched_front_ends(s1_cache, tmp_path):
    root, speaker = s1_cache
    shutil.copytree(root / speaker, tmp_path / "ann")
    shutil.copytree(root / speaker, tmp_path / "bob")
    dm = CASyncDataModule(str(tmp_path), ["ann", "bob"], batch_size=4, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 280 and len(dm.val_set) == 100
    assert set(dm.val_set.index[:, 0].tolist()) == {0, 1}
    pickle.loads(pickle.dumps(dm.train_set))  # DataLoader workers / DDP spawn receive it
    meta = json.loads((tmp_path / "bob" / "meta.json").read_text())
    meta["audio"]["window"] = 16
    (tmp_path / "bob" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="different audio front ends"):
        _ = CASyncDataModule(str(tmp_path), ["ann", "bob"], 4, 0).audio_meta


def test_missing_or_stale_cache_says_how_to_fix_it(s1_cache, tmp_path):
    with pytest.raises(CacheError, match="python -m casync.preprocess speaker=nobody"):
        CASyncDataModule(str(tmp_path), ["nobody"], 4, 0).setup("fit")
    shutil.copytree(s1_cache[0] / s1_cache[1], tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "meta.json").read_text())
    (tmp_path / "old" / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(CacheError, match="format version 0"):
        open_cache(tmp_path, "old")
    with pytest.raises(ValueError, match="invalid speaker name"):
        open_cache(tmp_path, "../old")


def test_three_way_split_separates_validation_from_a_test_range(s1_cache):
    from casync.data.split import split_three

    assert split_three(200, 0.25, 0.2, gap=10) == (range(0, 90), range(100, 150), range(160, 200))
    assert split_three(200, 0.0, 0.2, gap=10) == (range(0, 150), range(150, 150), range(160, 200))
    assert split_three(200, 0.25, 0.0, gap=10) == (
        *split_ranges(200, 0.25, gap=10),
        range(200, 200),
    )
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction < 1"):
        split_three(100, 0.5, 0.5, 5)
    root, speaker = s1_cache
    dm = CASyncDataModule(str(root), [speaker], num_workers=0, val_fraction=0.25, test_fraction=0.2)
    dm.setup("fit")
    assert dm.train_set.ranges == [range(0, 90)] and dm.val_set.ranges == [range(100, 150)]
    assert dm.test_set.ranges == [range(160, 200)]
    served = {int(f) for f in dm.train_set.index[:, 1]} | {int(f) for f in dm.val_set.index[:, 1]}
    assert max(served) < 150  # training and validation never serve a test frame
    plain = CASyncDataModule(str(root), [speaker], num_workers=0)
    plain.setup("fit")
    assert plain.test_set is None
