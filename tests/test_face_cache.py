"""The face-feature cache on a looping source (an avatar): a 9-frame clip of grid_s1_8s.mp4
driven by 2 s of jfk_11s.flac ping-pongs through the clip ~3 times. The output with the cache is
the output without it; the first pass only misses, the later ones hit; the memory budget holds;
another video or another reference never reuses the features of the first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clips import sample_audio, sample_frames, write_clip
from conftest import CLIP

from casync.contract import load_generator, save_generator_checkpoint
from casync.inference import Synthesizer
from casync.inference.face_cache import FaceFeatureCache
from casync.inference.precision import resolve_precision
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}
N_SOURCE, BATCH = 9, 8  # a ping-pong period of 16 frames: two groups


@pytest.fixture(scope="module")
def media(media_dir, tmp_path_factory) -> dict:
    """Two 9-frame clips of grid_s1_8s.mp4 (frames 0-8 and 100-108), 2 s of speech, a checkpoint."""
    folder = tmp_path_factory.mktemp("avatar")
    frames = sample_frames(media_dir / CLIP, 109)
    torch.manual_seed(0)
    save_generator_checkpoint(folder / "tiny.ckpt", CASyncNet(**TINY), TINY, MEL)
    return {
        "loop": write_clip(folder / "loop.mp4", frames[:N_SOURCE]),
        "other": write_clip(folder / "other.mp4", frames[100:109]),
        "audio": sample_audio(media_dir / "jfk_11s.flac")[8000:40000],  # 2 s
        "checkpoint": folder / "tiny.ckpt",
        "tracks": folder / "tracks",
    }


def synthesizer(media: dict, **options) -> Synthesizer:
    return Synthesizer.from_checkpoint(
        media["checkpoint"], progress=False, batch_size=BATCH, silence_dbfs=None,
        track_cache_dir=media["tracks"], **options,
    )  # fmt: skip


def crops(synth: Synthesizer, media: dict, video: Path) -> np.ndarray:
    synth.prepare(video)
    return np.stack([r.generated for r in synth.render([media["audio"]])])


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to rounding ties: the cache encodes only the frames that miss, a smaller batch
    than without it, and with 2+ threads oneDNN's kernels for another batch size can move a
    tie by one level (the same as `CropGenerator` at another batch size). Wrong features
    (another frame's, another reference's) change whole mouths, far past this."""
    diff = np.abs(a.astype(np.int16) - b)
    return a.shape == b.shape and diff.max() <= 1 and float(np.mean(diff > 0)) < 1e-3


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_a_looping_source_encodes_each_frame_once_and_gives_the_uncached_output(media):
    uncached = crops(synthesizer(media, face_cache_mb=0), media, media["loop"])
    synth = synthesizer(media)
    synth.prepare(media["loop"])
    rendered = synth.render([media["audio"]])
    first = [next(rendered).generated for _ in range(BATCH)]  # frames 0-7: the first pass
    assert (synth.face_cache.hits, synth.face_cache.misses) == (0, BATCH)
    cached = np.stack(first + [r.generated for r in rendered])
    assert len(cached) == 50 and same_pixels(cached, uncached)
    assert len(synth.face_cache) == N_SOURCE
    assert synth.face_cache.misses == N_SOURCE  # every later pass is all hits
    assert synth.face_cache.hits == len(cached) - N_SOURCE


def test_frames_past_the_memory_budget_are_not_kept(media):
    net = load_generator(media["checkpoint"]).net.eval()
    with torch.inference_mode():
        bottleneck, skips = net.encode_face(*net.example_inputs(1)[:2], net.example_inputs(1)[3])
    frame_bytes = sum(t.numel() * t.element_size() for t in [bottleneck, *skips])
    budget_mb = 3.5 * frame_bytes / 2**20
    synth = synthesizer(media, face_cache_mb=budget_mb)
    cached = crops(synth, media, media["loop"])
    assert len(synth.face_cache) == 3 and synth.face_cache.nbytes <= budget_mb * 2**20
    assert synth.face_cache.misses == len(cached) - synth.face_cache.hits > 3 * N_SOURCE
    assert same_pixels(cached, crops(synthesizer(media, face_cache_mb=0), media, media["loop"]))


@pytest.mark.parametrize("change", ["video", "reference"])
def test_another_video_or_reference_never_reuses_the_first_ones_features(media, change):
    """The reference is pinned to one crop for both videos (or the video to one for both
    references), so only the key's other part can tell the two renders apart."""
    synth = synthesizer(media)
    references = [np.full((1, 160, 160, 3), v, np.uint8) for v in (90, 160)]
    second = media["other"] if change == "video" else media["loop"]
    synth._reference = lambda source: references[0]
    crops(synth, media, media["loop"])
    if change == "reference":
        synth._reference = lambda source: references[1]
    got = crops(synth, media, second)
    fresh = synthesizer(media, face_cache_mb=0)
    fresh._reference = synth._reference
    expected = crops(fresh, media, second)
    assert same_pixels(got, expected)
    assert synth.face_cache.misses == 2 * N_SOURCE  # the second source was encoded again


def test_int8_with_the_cache_matches_int8_without_it(media):
    if resolve_precision("int8", "cpu") != "int8":
        pytest.skip("this CPU cannot run int8 natively")
    # One track cache dir: both share the graphs the first quantized (one calibration).
    uncached = crops(synthesizer(media, precision="int8", face_cache_mb=0), media, media["loop"])
    synth = synthesizer(media, precision="int8")
    cached = crops(synth, media, media["loop"])
    assert synth.face_cache.hits == len(cached) - N_SOURCE
    assert np.array_equal(cached, uncached) or psnr(cached, uncached) >= 45.0


def test_a_negative_budget_is_refused_by_name():
    with pytest.raises(ValueError, match=r"face_cache_mb=-1: a memory budget in MiB, >= 0"):
        FaceFeatureCache(-1)


def test_the_infer_config_carries_the_budget(compose):
    assert compose("infer").face_cache_mb == 1024


def test_an_output_no_longer_than_its_source_keeps_no_features(media, tmp_path):
    """synthesize() of 0.2 s (5 frames) over the 9-frame clip never returns to a frame: keeping
    its features would hold memory (up to the budget) for nothing. 2 s loops: all 9 are kept."""
    synth = synthesizer(media)
    synth.synthesize(media["loop"], media["audio"][:3200], tmp_path / "short.mp4")
    assert len(synth.face_cache) == 0 and synth.face_cache.misses == 5
    synth.synthesize(media["loop"], media["audio"], tmp_path / "long.mp4")
    assert len(synth.face_cache) == N_SOURCE
