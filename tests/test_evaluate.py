"""`casync.evaluate` on a real cache (of grid_s1_8s.mp4): the held-out range, clear errors, and
end-to-end verdicts for an oracle that follows the audio and for a model that ignores it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import DictConfig

import casync.evaluation.scoring as evaluate_module
from casync.audio.frontend import MissingWeightsError
from casync.contract import CheckpointError, LoadedGenerator, save_generator_checkpoint
from casync.data.cache import CacheError, open_cache
from casync.data.split import split_ranges
from casync.evaluate import evaluate
from casync.evaluation.runner import composite, held_out_range
from casync.face import stored_mask
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}


def compose_evaluate(overrides: list[str]) -> DictConfig:
    return compose_config("evaluate", overrides)


def eval_config(cache_root: Path, speaker: str, checkpoint: Path, out: Path, *extra: str):
    return compose_evaluate(
        [
            f"checkpoint={checkpoint}",
            f"speaker.name={speaker}",
            f"paths.cache_dir={cache_root}",
            f"paths.output_dir={out}",
            "metrics.lpips=none",
            "progress=false",
            "device=cpu",
            *extra,
        ]
    )


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.ckpt"
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    return path


class OracleNet(torch.nn.Module):
    """Returns the real crop whose audio window it is given: follows the audio perfectly."""

    def __init__(self, crops: np.ndarray, windows: np.ndarray) -> None:
        super().__init__()
        self.crops = torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float() / 255
        self.index = {}
        for i, window in enumerate(np.asarray(windows, dtype=np.float32)):
            self.index.setdefault(window.tobytes(), i)

    def forward(self, masked, mask, audio, reference=None):
        return self.decode(*self.encode_face(masked, mask, reference), audio)

    def encode_face(self, masked, mask, reference=None):  # the halves CropGenerator calls
        return masked, []

    def decode(self, bottleneck, skips, audio):
        rows = [self.index[w.tobytes()] for w in audio.cpu().numpy()]
        return self.crops[rows]


class IgnoresAudioNet(torch.nn.Module):
    """Paints the reference's mouth whatever the audio: the still-mouth baseline as a model."""

    def forward(self, masked, mask, audio, reference=None):
        return reference

    def encode_face(self, masked, mask, reference=None):
        return reference, []

    def decode(self, bottleneck, skips, audio):
        return bottleneck


def fake_generator(net: torch.nn.Module, reference: np.ndarray) -> LoadedGenerator:
    real = CASyncNet(**TINY)  # only its audio shape attributes are read by the front-end check
    net.audio_feature_dim, net.audio_window = real.audio_feature_dim, real.audio_window
    return LoadedGenerator(net, TINY, MEL, reference, 25.0, 160, mask=stored_mask(160))


def test_held_out_range_is_the_training_split_and_shifts_read_outside_it(s1_cache):
    cache = open_cache(*s1_cache)
    held = held_out_range(cache, 0.25)
    source = cache.sources[0]
    train, val = split_ranges(source.n_frames, 0.25, gap=10)
    assert (held.train, held.val) == ([train], [val]) and len(held) == 50
    np.testing.assert_array_equal(held.crops(), source.crops[150:200])
    np.testing.assert_allclose(held.frame_times(), np.arange(150, 200) / 25)  # 6.00-7.96 s
    assert held.has_shifted_audio(5).all()  # frames 145-194 exist
    np.testing.assert_array_equal(held.has_shifted_audio(-5), np.arange(150, 200) + 5 < 200)
    # +5 frames (audio late): frame 150 hears frame 145's window, from outside the held-out range
    np.testing.assert_array_equal(held.windows(5), np.asarray(source.audio[145:195], np.float32))
    np.testing.assert_array_equal(held.windows(-5)[:45], source.audio[155:200])
    np.testing.assert_array_equal(held.windows(-5)[45:], np.repeat(source.audio[199:], 5, 0))
    with pytest.raises(ValueError, match="no held-out frames"):
        held_out_range(cache, 0.0)


def test_composite_keeps_real_pixels_outside_the_mask():
    real = np.zeros((2, 4, 4, 3), np.uint8)
    generated = np.full((2, 4, 4, 3), 200, np.uint8)
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, 2:] = 1
    out = composite(real, generated, masks)
    assert (out[:, 2:] == 200).all() and (out[:, :2] == 0).all()


def test_missing_checkpoint_and_missing_cache_are_named(s1_cache, tiny_checkpoint, tmp_path):
    root, speaker = s1_cache
    cfg = eval_config(root, speaker, tmp_path / "nope.ckpt", tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"nope\.ckpt' does not exist"):
        evaluate(cfg)
    cfg = eval_config(tmp_path / "empty", speaker, tiny_checkpoint, tmp_path / "out")
    with pytest.raises(CacheError, match="no complete cache for speaker 's1'.*casync.preprocess"):
        evaluate(cfg)


def test_front_end_mismatch_between_checkpoint_and_cache(s1_cache, tmp_path):
    root, speaker = s1_cache
    model = {**TINY, "audio_feature_dim": 64}
    checkpoint = tmp_path / "mel64.ckpt"
    save_generator_checkpoint(checkpoint, CASyncNet(**model), model, {**MEL, "n_mels": 64})
    cfg = eval_config(root, speaker, checkpoint, tmp_path / "out")
    with pytest.raises(CheckpointError, match="trained on MelFrontEnd.*'n_mels': 64.*preprocess"):
        evaluate(cfg)
    hubert = {"_target_": "casync.audio.HubertFrontEnd", "feature_dim": 80, "window": 10}
    save_generator_checkpoint(checkpoint, CASyncNet(**TINY), TINY, hubert)
    with pytest.raises(CheckpointError, match="HubertFrontEnd.*cache .* holds 'mel'"):
        evaluate(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_lpips_without_weights_fails_before_any_work(s1_cache, tiny_checkpoint, tmp_path):
    import torchvision

    url = torchvision.models.get_model_weights("alexnet").IMAGENET1K_V1.url
    if (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file():
        pytest.skip("AlexNet weights are in the torch hub cache on this machine")
    root, speaker = s1_cache
    cfg = eval_config(root, speaker, tiny_checkpoint, tmp_path / "out", "metrics.lpips=alex")
    with pytest.raises(MissingWeightsError, match="allow_random_backbone=true"):
        evaluate(cfg)


@pytest.mark.slow
def test_random_model_report_has_every_method_shift_and_lse(s1_cache, tiny_checkpoint, tmp_path):
    from casync.evaluation import SyncNetColor

    root, speaker = s1_cache
    out = tmp_path / "out"
    syncnet = tmp_path / "syncnet.pth"  # random weights: exercises the LSE path, not its values
    torch.save({"state_dict": SyncNetColor().state_dict()}, syncnet)
    cfg = eval_config(
        root, speaker, tiny_checkpoint, out, "evaluate.allow_random_backbone=true",
        "metrics.lpips=alex", "evaluate.shifts_s=[-0.2,0.2]",
        f"evaluate.syncnet_checkpoint={syncnet}",
    )  # fmt: skip
    results = evaluate(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["methods"]) == {"casync", "still_mouth", "real"}
    real = saved["methods"]["real"]
    assert real["lmd"] == 0 and real["opening_corr"] == pytest.approx(1.0)
    assert real["crop/psnr"] == 100.0 and real["mouth/ssim"] == pytest.approx(1.0)
    assert real["crop/lpips"] == pytest.approx(0.0, abs=1e-6)
    assert [s["shift_frames"] for s in saved["shift_check"]["shifts"]] == [-5, 5]
    assert saved["held_out"]["frames"] == 50 and real["landmark_frames"] == 50
    assert saved["landmark_floor"]["lmd"] < 3.0  # crop detector agrees with the tracker
    markdown = (out / "metrics.md").read_text()
    assert "random backbone, not perceptual" in markdown and "still-mouth baseline" in markdown
    assert "LSE-D ↓" in markdown and "+0.2 s (+5 frames)" in markdown
    assert all(np.isfinite(m["lse_d"]) and "lse_c" in m for m in saved["methods"].values())
    assert saved["lse_message"] is None
    assert (out / "mouth_opening.png").read_bytes()[:4] == b"\x89PNG"
    assert results["verdict"].keys() == {
        "beats_still_mouth_lmd",
        "positive_shift_margin",
        "follows_audio",
    }


@pytest.mark.slow
def test_oracle_beats_still_mouth_and_audio_ignoring_model_does_not(
    s1_cache, tmp_path, monkeypatch
):
    """End to end through evaluate(): aligned audio must map to the right frames (an off-by-one
    or a wrong shift sign would break the oracle's zero LMD and positive margin)."""
    root, speaker = s1_cache
    source = open_cache(root, speaker).sources[0]
    reference = np.array(source.crops[20])
    oracle = fake_generator(OracleNet(source.crops, source.audio), reference)
    still = fake_generator(IgnoresAudioNet(), reference)
    checkpoint = tmp_path / "any.ckpt"
    shutil.copy(__file__, checkpoint)  # exists; its contents are never read (load is patched)
    monkeypatch.setattr(evaluate_module, "training_split", lambda path: {"val_fraction": 0.25})
    results = {}
    for name, generator in (("oracle", oracle), ("ignores_audio", still)):
        monkeypatch.setattr(evaluate_module, "load_generator", lambda path, g=generator: g)
        cfg = eval_config(
            root, speaker, checkpoint, tmp_path / name, "evaluate.shifts_s=[-0.2,0.5]"
        )
        results[name] = evaluate(cfg)

    oracle_result = results["oracle"]
    assert oracle_result["methods"]["casync"]["lmd"] == pytest.approx(0.0)
    assert oracle_result["verdict"] == {
        "beats_still_mouth_lmd": True,
        "positive_shift_margin": True,
        "follows_audio": True,
    }
    markdown = (tmp_path / "oracle" / "metrics.md").read_text()
    assert "LSE-C/LSE-D not computed: LSE-C/LSE-D need a SyncNet expert" in markdown
    assert "LMD margin [90 %]" in markdown and "Margin intervals (block bootstrap" in markdown
    ignoring = results["ignores_audio"]
    assert ignoring["shift_check"]["lmd_margin"] == pytest.approx(0.0, abs=1e-6)
    assert ignoring["verdict"]["positive_shift_margin"] is False
    assert ignoring["verdict"]["follows_audio"] is False
    assert ignoring["shift_check"]["evidence"] == "does not follow"


# -- one view of the held-out frames: the DataModule's validation split ---------------------------
@pytest.fixture
def two_source_cache(s1_cache, tmp_path) -> tuple[Path, str]:
    """The clip's cache plus a second source, its first 150 frames with no face found in three
    held-out ones (136, 137, 145): two sources of different lengths, some frames the DataModule
    never validates on -> (cache root, speaker)."""
    root, speaker = s1_cache
    shutil.copytree(root / speaker, tmp_path / "cache" / speaker)
    sources = tmp_path / "cache" / speaker / "sources"
    short = shutil.copytree(sources / "grid_s1_8s", sources / "s1_short")
    for array in short.glob("*.npy"):
        if array.name != "mask.npy":  # one mask for every frame
            np.save(array, np.load(array)[:150])
    face_found = np.load(short / "face_found.npy")
    face_found[[136, 137, 145]] = False
    np.save(short / "face_found.npy", face_found)
    meta = json.loads((sources.parent / "meta.json").read_text())
    entry = {**meta["sources"][0], "id": "s1_short", "n_frames": 150, "sha256": "0" * 64}
    meta["sources"].append(entry)
    (sources.parent / "meta.json").write_text(json.dumps(meta))
    stored = json.loads((short / "source.json").read_text())
    (short / "source.json").write_text(json.dumps({**stored, "id": "s1_short", "sha256": "0" * 64}))
    return tmp_path / "cache", speaker


def test_evaluate_scores_the_frames_the_datamodule_validates_on(
    two_source_cache, tmp_path, monkeypatch
):
    """Evaluation and training agree on the held-out frames: evaluate() generates exactly the
    validation ranges of the DataModule that conf/train.yaml builds (with the val_fraction the
    checkpoint's run held out), in source order, with each source's closed-mouth training frame as
    the still-mouth reference, and measures the tracker's lips on exactly the frames the
    DataModule's val set serves (those with a face)."""
    root, speaker = two_source_cache
    checkpoint = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    save_generator_checkpoint(checkpoint, CASyncNet(**TINY), TINY, MEL)
    saved = torch.load(checkpoint, weights_only=True)
    saved["datamodule_hyper_parameters"] = {"val_fraction": 0.1, "gap": 60}  # as Lightning does
    torch.save(saved, checkpoint)
    train_cfg = compose_config("train", [f"speaker.name={speaker}", f"paths.cache_dir={root}"])
    data = instantiate(train_cfg.data, val_fraction=0.1, gap=60, _convert_="all")  # as train()
    data.setup("validate")
    seen = {}

    def recording_range(*args):
        seen["held"] = held_out_range(*args)
        return seen["held"]

    monkeypatch.setattr(evaluate_module, "held_out_range", recording_range)

    class Recording(evaluate_module.HeldOutGenerator):
        def __call__(self, real, masks, windows, desc="generate"):
            seen.setdefault("real", real)
            seen.setdefault("source_index", self.source_index)
            return super().__call__(real, masks, windows, desc)

    monkeypatch.setattr(evaluate_module, "HeldOutGenerator", Recording)
    results = evaluate(
        eval_config(root, speaker, checkpoint, tmp_path / "out", "evaluate.shifts_s=[-0.2,0.2]")
    )

    sources, val = data.val_set.sources, data.val_set.ranges
    assert [len(r) for r in val] == [20, 15]  # frames 180-199 and 135-149
    real = np.concatenate([s.crops[r.start : r.stop] for s, r in zip(sources, val, strict=True)])
    np.testing.assert_array_equal(seen["real"], real)
    index = np.concatenate([np.full(len(r), i) for i, r in enumerate(val)])
    np.testing.assert_array_equal(seen["source_index"], index)
    assert results["held_out"]["frames"] == 35 and results["held_out"]["ranges_s"] == [
        [s.id, r.start / 25, r.stop / 25] for s, r in zip(sources, val, strict=True)
    ]
    assert results["landmark_floor"]["landmark_frames"] == len(data.val_set) == 32

    held = seen["held"]  # the view evaluate() scored
    assert held.train == data.train_set.ranges  # the run's gap: [0, 120) and [0, 75), not 170
    np.testing.assert_array_equal(held.frames()[held.has_face()], data.val_set.index)
    still = np.stack([s.crops[f] for s, f in zip(sources, data.closed_mouth_frames(), strict=True)])
    np.testing.assert_array_equal(held.closed_mouth_crops(), still)


def test_report_says_which_range_selected_and_which_reports(s1_cache, tiny_checkpoint, tmp_path):
    """A run that held out a test range is scored there by default; the report says validation
    selected and test reports, and gives the selection objective. Without a test range, asking
    for one names the keys to change."""
    root, speaker = s1_cache
    saved = torch.load(tiny_checkpoint, weights_only=True)
    saved["datamodule_hyper_parameters"] = {"val_fraction": 0.25, "test_fraction": 0.2, "gap": 10}
    with_test = tmp_path / "with_test.ckpt"
    torch.save(saved, with_test)
    results = evaluate(
        eval_config(root, speaker, with_test, tmp_path / "out", "evaluate.shifts_s=[0.2]")
    )
    assert results["held_out"]["split"] == "test"
    assert results["held_out"]["ranges_s"] == [["grid_s1_8s", 6.4, 8.0]]  # frames 160-199
    assert results["selection"] == {
        "selected_on": "val",
        "reported_on": "test",
        "test_fraction": 0.2,
    }
    assert set(results["sync"]) >= {"objective", "lmd_ratio", "opening_corr", "sharpness"}
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert "selected on the validation range; these scores are on the test range" in markdown
    assert "Lip-sync objective" in markdown
    with pytest.raises(ValueError, match="evaluate.split=test.*data.test_fraction=0"):
        evaluate(
            eval_config(root, speaker, tiny_checkpoint, tmp_path / "o2", "evaluate.split=test")
        )
