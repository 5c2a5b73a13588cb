"""Evaluation metrics on constructed cases with known answers, plus MediaPipe on a real face."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from casync.audio.frontend import MissingWeightsError
from casync.evaluation.image_metrics import (
    PSNR_CAP_DB,
    RANDOM_BACKBONE_LABEL,
    LPIPSMetric,
    image_metrics,
    mouth_box,
    psnr,
    ssim,
)
from casync.evaluation.lip_landmarks import (
    LIP_INDICES,
    LipLandmarkExtractor,
    lmd,
    mouth_opening,
    per_frame_lmd,
)
from casync.evaluation.metrics import landmark_metrics
from casync.evaluation.plots import plot_mouth_opening
from casync.evaluation.report import write_report
from casync.evaluation.syncnet import (
    SyncNetColor,
    load_syncnet,
    lse,
    lse_scores,
    offset_distances,
    wav2lip_mel,
)


@pytest.fixture
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 160, 160, 3), dtype=np.uint8)


# --- image metrics -----------------------------------------------------------------------------


def test_psnr_ssim_of_identical_frames(frames):
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert torch.all(psnr(x, x) == PSNR_CAP_DB)
    assert torch.allclose(ssim(x, x), torch.ones(4))


def test_psnr_known_value():
    real = torch.zeros(2, 3, 32, 32)
    assert torch.allclose(psnr(real + 0.1, real), torch.full((2,), 20.0))  # MSE 0.01 -> 20 dB


def test_mouth_box_is_mask_bbox_plus_margin():
    masks = np.zeros((3, 160, 160), dtype=np.uint8)
    masks[0, 100:120, 50:110] = 1
    masks[2, 110:130, 60:100] = 1  # the union spans rows 100-129
    assert mouth_box(masks, margin=4) == (96, 134, 46, 114)
    assert mouth_box(masks[:1, :, :], margin=0) == (100, 120, 50, 110)
    with pytest.raises(ValueError, match="empty"):
        mouth_box(np.zeros((2, 160, 160)))


def test_mouth_metrics_only_see_the_mouth_box(frames):
    box = (100, 140, 40, 120)
    gen = frames.copy()
    gen[:, :50] = 255 - gen[:, :50]  # damage the forehead only

    scores = image_metrics(gen, frames, box)

    assert scores["mouth/psnr"] == PSNR_CAP_DB
    assert scores["mouth/ssim"] == pytest.approx(1.0)
    assert scores["crop/psnr"] < 20 and scores["crop/ssim"] < 0.9
    assert "crop/lpips" not in scores


def test_lpips_without_weights_names_the_config_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    with pytest.raises(MissingWeightsError, match="metrics.lpips_weights=") as error:
        LPIPSMetric(net="squeeze")
    assert "evaluate.allow_random_backbone=true" in str(error.value)
    with pytest.raises(FileNotFoundError, match="metrics.lpips_weights"):
        LPIPSMetric(net="squeeze", weights=str(tmp_path / "nope.pth"))


def test_lpips_random_backbone_is_labelled(tmp_path, monkeypatch, frames):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    metric = LPIPSMetric(net="squeeze", allow_random_backbone=True)
    assert metric.label == RANDOM_BACKBONE_LABEL and not metric.is_perceptual

    scores = image_metrics(frames, frames, (100, 140, 40, 120), metric)
    assert scores["crop/lpips"] == pytest.approx(0.0, abs=1e-6)
    assert scores["mouth/lpips"] == pytest.approx(0.0, abs=1e-6)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert torch.all(metric(x, x.flip(-1)) > 0)


def test_lpips_loads_a_torchvision_backbone_file(tmp_path):
    import torchvision

    state = torchvision.models.squeezenet1_1().state_dict()
    path = tmp_path / "squeezenet.pth"
    torch.save(state, path)

    metric = LPIPSMetric(net="squeeze", weights=str(path))

    assert metric.label == "LPIPS (squeeze)" and metric.is_perceptual
    loaded = metric.model.net.state_dict()
    assert torch.equal(loaded["slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(loaded["slice7.12.expand3x3.bias"], state["features.12.expand3x3.bias"])
    with pytest.raises(ValueError, match="not a torchvision state_dict"):
        LPIPSMetric(net="alex", weights=str(path))


# --- lip landmarks -----------------------------------------------------------------------------


def circle_lips(n_frames: int, radius: float = 10.0) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, len(LIP_INDICES), endpoint=False)
    ring = np.stack([80 + radius * np.cos(angles), 110 + radius * np.sin(angles)], axis=1)
    return np.repeat(ring[None], n_frames, axis=0).astype(np.float32)


def test_lip_indices_match_mediapipe():
    import mediapipe as mp

    lips = {i for edge in mp.solutions.face_mesh.FACEMESH_LIPS for i in edge}
    assert tuple(sorted(lips)) == LIP_INDICES


def test_lmd_known_answers():
    real = circle_lips(3)
    assert lmd(real, real) == 0.0
    moved = real + np.array([[[5.0, -3.0]], [[-20.0, 7.0]], [[0.0, 40.0]]], dtype=np.float32)
    assert lmd(moved, real) == pytest.approx(0.0, abs=1e-4)  # translation is mean-centred away
    centre = np.array([80.0, 110.0], dtype=np.float32)
    scaled = centre + 2 * (real - centre)  # twice the radius: every point moves 10 px outwards
    assert lmd(scaled, real) == pytest.approx(10.0, abs=1e-4)
    assert lmd(scaled + 7, real) == pytest.approx(10.0, abs=1e-4)


def test_lmd_skips_frames_without_landmarks():
    real, gen = circle_lips(3), circle_lips(3, radius=14.0)  # every point 4 px off
    gen[1] = np.nan
    per_frame = per_frame_lmd(gen, real)
    assert np.isnan(per_frame[1]) and per_frame[0] == pytest.approx(4.0, abs=1e-4)
    assert lmd(gen, real) == pytest.approx(4.0, abs=1e-4)
    assert np.isnan(lmd(np.full_like(real, np.nan), real))


def test_mouth_opening_is_gap_over_width():
    points = circle_lips(2)
    corner_a, corner_b = LIP_INDICES.index(61), LIP_INDICES.index(291)
    upper, lower = LIP_INDICES.index(13), LIP_INDICES.index(14)
    points[:, corner_a], points[:, corner_b] = (60, 110), (100, 110)  # width 40
    points[:, upper], points[:, lower] = (80, 105), (80, 115)  # gap 10
    points[1] = 2 * points[1]  # the same mouth, twice as big
    np.testing.assert_allclose(mouth_opening(points), [0.25, 0.25], rtol=1e-6)


@pytest.fixture(scope="module")
def obama_crop(media_dir: Path) -> np.ndarray:
    """A 160x160 face crop of the sample portrait (face ~90% of the crop, like CASync crops)."""
    image = cv2.cvtColor(cv2.imread(str(media_dir / "obama.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(image[112:433, 332:653], (160, 160), interpolation=cv2.INTER_AREA)


def test_extractor_finds_lips_on_a_real_face(obama_crop):
    blank = np.full_like(obama_crop, 128)
    with LipLandmarkExtractor() as extractor:
        found = extractor(np.stack([obama_crop, blank, obama_crop]))

    np.testing.assert_array_equal(found.found, [True, False, True])
    assert found.n_missing == 1 and np.isnan(found.points[1]).all()
    lips = found.points[0]
    centre = lips.mean(axis=0)
    assert 65 < centre[0] < 95 and 100 < centre[1] < 135  # centred, in the lower face
    width = np.ptp(lips[:, 0])
    assert 30 < width < 80 and np.ptp(lips[:, 1]) < width  # a mouth is wider than tall
    assert 0.05 < mouth_opening(found.points)[0] < 0.6  # smiling, teeth showing
    scores = landmark_metrics(found, found)
    assert scores["lmd"] == 0.0 and scores["landmark_frames"] == 2.0
    assert scores["no_face_gen"] == 1.0


# --- SyncNet LSE -------------------------------------------------------------------------------


def test_syncnet_without_checkpoint_says_which_key_to_set(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"set evaluate\.syncnet_checkpoint="):
        load_syncnet(None)
    with pytest.raises(FileNotFoundError, match="evaluate.syncnet_checkpoint"):
        load_syncnet(str(tmp_path / "missing.pth"))


def test_lse_of_embeddings_with_a_known_offset():
    rng = np.random.default_rng(0)
    face = rng.standard_normal((40, 16))
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    audio = np.roll(face, 3, axis=0)  # audio window j carries face window j - 3: audio 3 late

    offsets, distances = offset_distances(face, audio, max_offset=15)
    scores = lse_scores(offsets, distances)

    assert len(offsets) == 31 and scores["av_offset"] == 3.0
    assert scores["lse_d"] == pytest.approx(0.0, abs=1e-9)
    assert scores["lse_c"] > 1.0  # random unit vectors are ~sqrt(2) apart


def test_lse_with_random_weights_runs_end_to_end(tmp_path, frames):
    state = {f"module.{k}": v for k, v in SyncNetColor().state_dict().items()}
    path = tmp_path / "syncnet.pth"
    torch.save({"state_dict": state, "global_step": 0}, path)
    model = load_syncnet(str(path))
    crops = np.concatenate([frames] * 3)  # 12 frames -> 8 windows
    waveform = np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1

    scores = lse(model, crops, waveform, fps=25.0)

    assert set(scores) == {"lse_d", "lse_c", "av_offset"}
    assert 0 <= scores["lse_d"] <= 2  # distances between unit vectors
    assert scores["lse_c"] >= 0 and abs(scores["av_offset"]) <= 7


def test_wav2lip_mel_shape_and_range():
    mel = wav2lip_mel(np.random.default_rng(0).standard_normal(16_000).astype(np.float32))
    assert mel.shape == (80, 81)  # 80 Hz, centred frames
    assert mel.min() >= -4 and mel.max() <= 4


# --- report and plots --------------------------------------------------------------------------


def test_report_writes_strict_json_and_a_table(tmp_path):
    results = {
        "methods": {
            "real": {"crop/psnr": PSNR_CAP_DB, "lmd": 0.0, "crop/lpips": 0.0},
            "casync": {"crop/psnr": 31.234, "lmd": 1.5, "crop/lpips": float("nan")},
            "still_mouth": {"crop/psnr": 28.0, "lmd": 3.25, "crop/lpips": 0.2},
        },
        "shift_check": None,
        "lpips_label": RANDOM_BACKBONE_LABEL,
        "lse_message": "set evaluate.syncnet_checkpoint=...",
    }
    write_report(results, tmp_path / "metrics.json", tmp_path / "metrics.md")

    def reject(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    loaded = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=reject)
    assert loaded["methods"]["casync"]["crop/lpips"] is None
    table = (tmp_path / "metrics.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "CASync",
        "still-mouth baseline",
        "real frames (upper bound)",
    ]
    assert "| 31.23 |" in rows[1] and "∞" in rows[3] and "—" in rows[1]
    assert "LPIPS (random backbone, not perceptual)" in rows[0]
    assert "evaluate.syncnet_checkpoint" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "metrics.md"]


def test_mouth_opening_plot_is_a_png(tmp_path):
    t = np.linspace(0, 4, 100)
    path = plot_mouth_opening(np.sin(t), np.cos(t), tmp_path / "plots" / "opening.png", t + 6)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- how far the mouth moves, and how sharp it is ------------------------------------------------


def test_opening_amplitude_is_the_ratio_of_the_spreads():
    from casync.evaluation.metrics import opening_amplitude

    real = 0.05 + 0.1 * np.abs(np.sin(np.linspace(0, 12, 200)))  # a mouth opening and closing
    assert opening_amplitude(real, real) == pytest.approx(1.0)
    assert opening_amplitude(0.02 + 0.2 * real, real) == pytest.approx(0.2)  # a fifth as wide
    assert opening_amplitude(np.full(200, 0.05), real) == 0.0  # a still mouth
    assert np.isnan(opening_amplitude(real[:1], real[:1]))


def test_mouth_sharpness_scores_a_blurred_real_mouth_low(s1_cache):
    from casync.data.cache import open_cache
    from casync.evaluation.metrics import mouth_sharpness

    source = open_cache(*s1_cache).sources[0]
    real = np.asarray(source.crops[150:170])
    box = mouth_box(np.repeat(np.asarray(source.mask)[None], len(real), axis=0))
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in real])
    assert mouth_sharpness(real, real, box) == pytest.approx(1.0)
    assert mouth_sharpness(blurred, real, box) < 0.3
    assert mouth_sharpness(np.full_like(real, 128), real, box) == 0.0
