"""Face mesh landmarks on real faces, crop/mask geometry, paste-back, gap filling and smoothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from clips import sample_audio, sample_frames, write_clip

from casync.face import (
    LIP_INDICES,
    FaceTracker,
    cut_crop,
    params_to_transform,
    paste_back,
    region_mask,
    track_video,
    transform_points,
)
from casync.face.track import _FixedLagSmoother, gaussian_kernel


@pytest.fixture(scope="module")
def obama(media_dir) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(media_dir / "obama.jpg")), cv2.COLOR_BGR2RGB)


def test_tracker_finds_478_landmarks_on_a_real_face_and_none_on_a_wall(obama):
    with FaceTracker(static_image_mode=True) as tracker:
        points = tracker(obama)
        assert tracker(np.full((256, 256, 3), 128, np.uint8)) is None
    assert points.shape == (478, 3)
    lips, chin, nose = points[list(LIP_INDICES), :2], points[152, :2], points[1, :2]
    assert nose[1] < lips[:, 1].min() and lips[:, 1].max() < chin[1]  # upright face
    assert points[:, 0].min() > 0 and points[:, 0].max() < obama.shape[1]


def test_transform_maps_the_crop_centre_and_scale():
    transform = params_to_transform(np.array([300.0, 200.0, 100.0, np.pi / 6]), 160)
    assert transform.shape == (2, 3) and transform.dtype == np.float32
    centre = transform_points(np.array([[300.0, 200.0]]), transform)
    assert np.allclose(centre, [[80, 80]], atol=1e-3)
    along_face_x = np.array([[300 + 50 * np.cos(np.pi / 6), 200 + 50 * np.sin(np.pi / 6)]])
    assert np.allclose(transform_points(along_face_x, transform), [[160, 80]], atol=1e-3)


def test_region_mask_hard_and_feathered():
    hard, soft = region_mask(160), region_mask(160, feather=4)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert hard[:40].sum() == 0 and hard[120, 80] == 1  # nose and above are kept, mouth area not
    assert soft[120, 80] == pytest.approx(1) and soft[0, 0] == 0
    edge = soft[(soft > 0) & (soft < 1)]
    assert edge.size > 0 and soft.min() >= 0 and soft.max() <= 1


def test_paste_back_inverts_cut_and_leaves_alpha_zero_untouched(obama):
    transform = params_to_transform(np.array([455.0, 700.0, 300.0, 0.1]), 160)
    crop = cut_crop(obama, transform, 160)
    alpha = region_mask(160, feather=3)
    restored = paste_back(obama, crop, transform, alpha)
    painted = paste_back(obama, np.zeros_like(crop), transform, alpha)
    changed = np.any(painted != obama, axis=2)
    assert changed.sum() > 0.5 * (300 * 300 * alpha.mean())  # the region was blended in
    ys, xs = np.nonzero(changed)
    assert xs.min() > 455 - 160 and xs.max() < 455 + 160 and ys.min() > 700 - 160
    # Outside the warped alpha the frame is bit-exact; inside, cut + paste nearly round-trips.
    assert np.array_equal(painted[~changed], obama[~changed])
    assert np.abs(restored.astype(int) - obama).mean() < 0.5


def _batch_fill_and_smooth(boxes: np.ndarray, found: np.ndarray, sigma: float) -> np.ndarray:
    """Reference: whole-video linear gap filling (held ends), then edge-padded Gaussian."""
    index = np.arange(len(boxes))
    filled = np.stack([np.interp(index, index[found], boxes[found, c]) for c in range(4)], 1)
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    padded = np.pad(filled, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, "valid") for c in range(4)], 1)


def _stream(boxes, found, sigma, max_gap):
    smoother, out, lags = _FixedLagSmoother(sigma), [], []
    for k, (box, hit) in enumerate(zip(boxes, found, strict=True)):
        ready = smoother.push(box if hit else None, max_gap, fallback=np.zeros(4))
        out += ready
        lags.append(k + 1 - len(out))  # frames pushed but not handed out yet
    return np.array(out + smoother.finish()), np.array(lags), smoother


def test_fixed_lag_smoother_equals_whole_video_filling_and_smoothing():
    rng = np.random.default_rng(0)
    boxes = np.cumsum(rng.normal(0, 2, (80, 4)), axis=0) + np.array([200, 200, 100, 0])
    found = np.ones(80, bool)
    found[:3] = found[30:37] = found[-4:] = False  # leading, inner and trailing gaps
    streamed, lags, smoother = _stream(boxes, found, sigma=1.5, max_gap=50)
    assert np.allclose(streamed, _batch_fill_and_smooth(boxes, found, 1.5), atol=1e-9)
    # Lag: the kernel radius (5) while the face is seen; inside a gap it grows with the gap.
    assert lags[20] == 5 and lags[36] == 5 + 7 and lags[50] == 5 and smoother.held == 3 + 4
    jittery = np.tile([100.0, 100.0, 50.0, 0.0], (50, 1))
    jittery[::2, 0] += 4
    smoothed, _, _ = _stream(jittery, np.ones(50, bool), sigma=1.5, max_gap=50)
    assert np.ptp(smoothed[5:-5, 0]) < 0.2 * np.ptp(jittery[:, 0])


def test_gaps_longer_than_the_buffer_hold_the_last_box_and_bound_the_lag():
    boxes = np.tile([100.0, 100.0, 50.0, 0.0], (60, 1)) + np.arange(60)[:, None] * [1, 0, 0, 0]
    found = np.ones(60, bool)
    found[10:40] = False  # 30 frames without a face, buffer of 8
    streamed, lags, smoother = _stream(boxes, found, sigma=1.0, max_gap=8)
    assert lags.max() <= 8 + 3  # never more than the buffer plus the kernel radius
    raw = np.array(smoother.raw)
    assert np.allclose(raw[10:32, 0], boxes[9, 0])  # held while the buffer kept overflowing
    assert np.all(np.diff(raw[31:41, 0]) > 0)  # the last buffered stretch bridges to the face
    assert smoother.held == 22 and len(streamed) == 60
    # No face for longer than the buffer at the start: the oldest frames get the fallback box.
    found[:] = True
    found[:20] = False
    streamed, lags, smoother = _stream(boxes, found, sigma=1.0, max_gap=8)
    assert lags.max() <= 8 + 3 and np.allclose(smoother.raw[0], 0) and smoother.held == 12
    assert np.allclose(streamed[25:], _batch_fill_and_smooth(boxes, found, 1.0)[25:])


def test_track_video_fills_faceless_frames_and_mouth_stays_in_mask(tmp_path, media_dir):
    grid = media_dir / "grid_s_pwij3p.mpg"
    frames = sample_frames(grid, 50)
    frames[20:26] = [np.full_like(frames[0], 90)] * 6  # six frames with no face
    clip = write_clip(tmp_path / "gap.mp4", frames, audio=sample_audio(grid, 2.0))
    track = track_video(clip, fps=25.0, crop_size=160, smoothing=1.5)
    assert len(track) == 50 and track.transforms.shape == (50, 2, 3)
    assert np.array_equal(np.flatnonzero(~track.face_found), np.arange(20, 26))
    report = track.report()
    assert report["frames_without_face"] == 6 and report["longest_gap_frames"] == 6
    assert report["jitter_smoothed_px"] <= report["jitter_raw_px"]
    # The gap's crop lies between its neighbours' crops, not at some default place.
    centres = track.params[:, :2]
    low, high = np.minimum(centres[19], centres[26]) - 2, np.maximum(centres[19], centres[26]) + 2
    assert np.all((low <= centres[20:26]) & (centres[20:26] <= high))
    mask = region_mask(160) > 0
    for k in np.flatnonzero(track.face_found):
        lips = transform_points(track.landmarks[k][list(LIP_INDICES)], track.transforms[k])
        assert mask[lips[:, 1].astype(int), lips[:, 0].astype(int)].all(), k
