"""The generator contract (issue 12): a checkpoint carries its cache's frame rate and crop
smoothing and every training source's reference, and inference uses them; old checkpoints load.
Also the resume/evaluate refusals that read the checkpoint (issue 13, items 11 and 12)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import sample_audio, sample_frames, write_clip
from conftest import CLIP, compose_config
from test_evaluate import eval_config
from test_inference import MEL, TINY
from test_training import compose_train, run_checkpointed, tiny_overrides

import casync.face.crop as face_crop
from casync.contract import (
    CheckpointError,
    generator_contract,
    load_generator,
    save_generator_checkpoint,
)
from casync.data import CASyncDataModule
from casync.data.cache import open_cache
from casync.data.reference import closed_mouth_frame
from casync.evaluate import evaluate
from casync.face import feathered, stored_mask
from casync.inference import Synthesizer
from casync.inference.source import choose_reference
from casync.media.audio import load_audio
from casync.model import CASyncNet
from casync.preprocess import preprocess
from casync.train import train

FPS, SMOOTHING = 30.0, 0.5  # not the defaults (25, 1.5): the bugs hid behind them


@pytest.fixture(scope="module")
def two_source_run(media_dir, tmp_path_factory):
    """A cache of two real clips made at 30 fps with smoothing 0.5, and a 2-step run on it ->
    (cache root, speaker, clips, last.ckpt)."""
    work = tmp_path_factory.mktemp("contract")
    clip = media_dir / CLIP
    clips = [
        write_clip(work / "first.mp4", sample_frames(clip, 60), audio=sample_audio(clip, 2.4)),
        Path(shutil.copy(media_dir / "grid_s_pwij3p.mpg", work / "second.mpg")),
    ]
    cfg = compose_config("preprocess",
        [
            "speaker.name=pair", "audio=mel", f"paths.cache_dir={work / 'cache'}",
            f"speaker.videos=[{clips[0]},{clips[1]}]", f"preprocess.fps={FPS}",
            f"preprocess.smoothing={SMOOTHING}",
        ]
    )  # fmt: skip
    preprocess(cfg)
    run = compose_train(tiny_overrides(work / "cache", "pair", work / "run"))
    return work / "cache", "pair", clips, run_checkpointed(run, max_steps=2)


def test_checkpoint_carries_the_caches_fps_smoothing_and_every_sources_reference(
    two_source_run,
):
    root, speaker, _, last = two_source_run
    extras = torch.load(last, weights_only=True)["casync"]
    assert extras["fps"] == FPS and extras["smoothing"] == SMOOTHING
    assert extras["sample_rate"] == 16_000 and extras["crop_size"] == 160
    data = CASyncDataModule(str(root), [speaker], num_workers=0)
    frames = data.closed_mouth_frames()  # the references training used
    cache = open_cache(root, speaker)
    assert len(extras["references"]) == len(cache.sources) == 2
    for shipped, source, frame in zip(extras["references"], cache.sources, frames, strict=True):
        assert shipped["source_id"] == source.id and shipped["sha256"] == source.info["sha256"]
        np.testing.assert_array_equal(shipped["crop"].numpy(), source.crops[frame])
    generator = load_generator(last)
    assert generator.fps == FPS and generator.smoothing == SMOOTHING


def test_inference_renders_at_the_checkpoints_fps_with_its_crops_and_sources_reference(
    two_source_run, tmp_path
):
    root, speaker, clips, last = two_source_run
    cache = open_cache(root, speaker)
    synth = Synthesizer.from_checkpoint(last, progress=False)
    for clip, source in zip(clips, cache.sources, strict=True):
        video = synth.prepare(clip, keep_frames=0)
        # The crops training saw: the same transforms (so the same smoothing and fps).
        np.testing.assert_allclose(video.transforms, source.transforms, atol=1e-3)
        crop, what = choose_reference(synth.generator, video)
        assert what == f"training source {source.id}"
        frame = CASyncDataModule(str(root), [speaker], num_workers=0).closed_mouth_frames()
        np.testing.assert_array_equal(crop, source.crops[frame[cache.sources.index(source)]])
    speech = write_clip(
        tmp_path / "speech.wav", None, audio=sample_audio(clips[0], 1.0), audio_codec="pcm_s16le"
    )
    result = synth.synthesize(clips[1], speech, tmp_path / "out.mp4")
    assert result["fps"] == FPS and result["frames"] == 30
    assert result["reference"] == f"training source {cache.sources[1].id}"
    with av.open(result["output"]) as container:
        assert float(container.streams.video[0].average_rate) == FPS


def test_an_unknown_video_gets_its_own_closed_mouth_frame(two_source_run, media_dir, tmp_path):
    _, _, _, last = two_source_run
    other = write_clip(tmp_path / "other.mp4", sample_frames(media_dir / CLIP, 150)[100:])
    synth = Synthesizer.from_checkpoint(last, progress=False)
    video = synth.prepare(other, keep_frames=None)
    crop, what = choose_reference(synth.generator, video)
    frame = closed_mouth_frame(video.track, range(video.n_frames))  # training's rule
    assert what == f"closed-mouth frame {frame} of the video"
    from casync.face import cut_crop

    expected = cut_crop(video.frames[frame], video.transforms[frame], synth.size)
    np.testing.assert_array_equal(crop, expected)


class ReferenceNet(torch.nn.Module):
    """Generates its reference input: which reference each frame got is visible in the output."""

    def forward(self, masked, mask, audio, reference):
        return reference

    def encode_face(self, masked, mask, reference):  # the halves CropGenerator calls
        return reference, []

    def decode(self, bottleneck, skips, audio):
        return bottleneck


def test_evaluation_generates_each_source_with_its_own_shipped_reference(two_source_run):
    """Evaluation feeds each held-out source the reference inference uses for that video, not
    the first source's for all (the checkpoint ships one per source)."""
    from casync.evaluation.runner import HeldOutGenerator, held_out_range, source_references

    root, speaker, _, last = two_source_run
    generator, cache = load_generator(last), open_cache(root, speaker)
    held = held_out_range(cache, 0.25)
    references, used = source_references(generator, held)
    assert used == ["the checkpoint's"] * 2
    sources = held.source_index()
    generate = HeldOutGenerator(ReferenceNet(), references, sources)
    real, masks = held.crops(), held.masks()
    out = generate(real, masks, held.windows(0))
    inside = masks.astype(bool)
    for index, source in enumerate(held.sources):
        shipped = generator.reference_for(source.info["sha256"]).crop
        frames = sources == index
        assert frames.any()
        expected = np.broadcast_to(shipped, real[frames].shape)
        np.testing.assert_array_equal(out[frames][inside[frames]], expected[inside[frames]])
    assert not np.array_equal(references[0], references[1])


def test_a_format_1_checkpoint_with_one_reference_still_loads(two_source_run, tmp_path):
    _, _, clips, _ = two_source_run
    path = tmp_path / "old.ckpt"
    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    old = torch.load(path, weights_only=True)
    reference = torch.full((160, 160, 3), 77, dtype=torch.uint8)
    old["casync"] = {"format": 1, "reference": reference, "fps": 25.0, "crop_size": 160}
    torch.save(old, path)
    generator = load_generator(path)
    assert generator.fps == 25.0 and generator.smoothing == 1.5
    assert np.array_equal(generator.reference, reference.numpy())
    synth = Synthesizer(generator, progress=False)
    crop, what = choose_reference(generator, synth.prepare(clips[1], keep_frames=0))
    assert np.array_equal(crop, reference.numpy()) and "format 1" in what


# -- resume and evaluation refusals ------------------------------------------------------------
def test_a_corrupt_or_other_size_ckpt_path_is_one_clear_line(two_source_run, tmp_path):
    root, _, _, last = two_source_run  # a real Lightning checkpoint of model=casync_tiny
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(last.read_bytes()[:5000])  # a copy cut short
    cfg = compose_train(tiny_overrides(root, "pair", tmp_path / "run"))
    cfg.ckpt_path = str(corrupt)
    with pytest.raises(CheckpointError, match="corrupt.ckpt' could not be read") as error:
        train(cfg)
    assert "\n" not in str(error.value)
    big = compose_train([*tiny_overrides(root, "pair", tmp_path / "big"), "model=casync"])
    big.ckpt_path = str(last)  # Lightning alone: 166 "size mismatch" lines
    with pytest.raises(CheckpointError, match=r"width_multiplier=0\.25 \(this run: 1\.0\)") as e:
        train(big)
    assert "\n" not in str(e.value) and "size mismatch" not in str(e.value)


def test_evaluate_refuses_a_held_out_range_that_reaches_into_training(s1_cache, tmp_path):
    root, speaker = s1_cache
    path = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["datamodule_hyper_parameters"] = {"val_fraction": 0.25}  # as Lightning saves it
    torch.save(checkpoint, path)
    cfg = eval_config(root, speaker, path, tmp_path / "out", "evaluate.val_fraction=0.5")
    with pytest.raises(ValueError, match=r"val_fraction=0\.5 is larger than the 0\.25"):
        evaluate(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert json.loads((root / speaker / "meta.json").read_text())["fps"] == 25.0


# -- the region mask (issue 12): the network's mask input comes from the checkpoint ---------------
class MaskNet(torch.nn.Module):
    """Paints the mask it is fed: the generated crop shows which mask inference used."""

    audio_feature_dim, audio_window = MEL["feature_dim"], MEL["window"]

    def forward(self, masked, mask, audio, reference):
        return self.decode(*self.encode_face(masked, mask, reference), audio)

    def encode_face(self, masked, mask, reference):  # the halves CropGenerator may call
        return mask, []

    def decode(self, bottleneck, skips, audio):
        return bottleneck.expand(-1, 3, -1, -1)


def test_inference_masks_with_the_mask_training_was_fed_from_the_cache(s1_cache, tmp_path):
    """A cache whose mask.npy is not the code's region (another CASync wrote it, or the code's
    region changed since): the checkpoint carries the cache's mask, and inference feeds the
    network that mask, not one rebuilt from code defaults."""
    root, speaker = tmp_path / "cache", s1_cache[1]
    shutil.copytree(s1_cache[0] / speaker, root / speaker)
    custom = np.zeros((160, 160), np.uint8)
    custom[70:150, 30:130] = 1  # a box, not the rounded region of casync.face.crop
    (source,) = open_cache(root, speaker).sources
    np.save(source.dir / "mask.npy", custom)
    data = CASyncDataModule(str(root), [speaker], batch_size=2, num_workers=0, augment=False)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert torch.equal(batch["mask"][0, 0], torch.from_numpy(custom).float())  # what training saw
    path = tmp_path / "run.ckpt"
    save_generator_checkpoint(
        path, CASyncNet(**TINY), TINY, MEL, generator_contract(data)
    )  # as training saves it
    generator = load_generator(path)
    np.testing.assert_array_equal(generator.mask, custom)
    synth = Synthesizer(replace(generator, net=MaskNet()), progress=False, silence_dbfs=None)
    np.testing.assert_array_equal(synth.blender.alpha, feathered(custom, 5.0))  # paste-back
    video = synth.prepare(source.info["path"], keep_frames=None)
    speech = load_audio(source.info["path"], 16_000)[:16_000]
    rendered = list(synth.render([speech], video))
    assert rendered and all(r.face_found for r in rendered)
    for frame in rendered:
        np.testing.assert_array_equal(frame.generated, np.repeat(custom[..., None] * 255, 3, -1))


def test_a_saved_mask_survives_a_change_of_the_codes_region(tmp_path, monkeypatch):
    """Format 4 stores the mask: a checkpoint keeps it when casync.face.crop's region changes.
    A format-3 checkpoint (no mask stored) loads with the region every cache of its time held;
    a newer format is refused with a clear error."""
    path = tmp_path / "run.ckpt"
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    saved = stored_mask(160)
    monkeypatch.setattr(face_crop, "MASK_TOP", 0.5)  # the code's region changes after training
    assert not np.array_equal(stored_mask(160), saved)
    np.testing.assert_array_equal(load_generator(path).mask, saved)
    monkeypatch.undo()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["casync"]["format"] == 4
    np.testing.assert_array_equal(checkpoint["casync"]["mask"].numpy(), saved)
    old = {**checkpoint["casync"], "format": 3}
    del old["mask"]
    torch.save({**checkpoint, "casync": old}, path)
    np.testing.assert_array_equal(load_generator(path).mask, saved)
    torch.save({**checkpoint, "casync": {**checkpoint["casync"], "format": 5}}, path)
    with pytest.raises(CheckpointError, match="format 5; this CASync reads formats 1-4"):
        load_generator(path)
