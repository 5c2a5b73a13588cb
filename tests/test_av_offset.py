"""Audio-video offset estimation on real footage: 20 s of the demo's sample
(assets/grid_s1_sample.mp4, GRID talker 1) with its own audio (offset ~0), shifted by known amounts
(found within a frame), with another stretch's audio (flagged), and end to end through
preprocessing (reported, warned, corrected on request)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from clips import sample_audio, write_clip
from conftest import compose_config, preprocess_settings

from casync.data.av_offset import (
    AVOffset,
    UnsyncedAudioError,
    estimate_av_offset,
    offset_to_apply,
    shift_audio,
)
from casync.face import track_video
from casync.media.video import iter_frames
from casync.preprocess import preprocess

FPS, SR = 25.0, 16_000
SECONDS = 20
FOOTAGE = Path(__file__).resolve().parents[1] / "assets" / "grid_s1_sample.mp4"  # 2 min, in sync
# Seconds 20-40: its own audio scores a confidence of ~8 at every delay below (seconds 0-20 score
# 3.75 for the 0.3 s delay, near the 3.5 threshold). The sample's sentences are 3 s each.
START = 20


def delayed(audio: np.ndarray, seconds: float) -> np.ndarray:
    """The soundtrack `seconds` late (negative: early), same length."""
    return shift_audio(audio, -seconds * FPS, FPS, SR)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> tuple[Path, object, np.ndarray]:
    """(20 s clip, its face track, its audio) from seconds START to START + 20 of FOOTAGE."""
    frames = []
    for k, frame in enumerate(iter_frames(FOOTAGE, FPS)):
        if k >= START * FPS:
            frames.append(frame)
        if len(frames) == SECONDS * FPS:
            break
    audio = sample_audio(FOOTAGE)[START * SR : (START + SECONDS) * SR]
    clip = write_clip(tmp_path_factory.mktemp("footage") / "grid_20s.mp4", frames, audio=audio)
    return clip, track_video(clip, FPS, crop_size=160, smoothing=1.5), audio


def estimate(track, audio: np.ndarray) -> AVOffset:
    return estimate_av_offset(track.landmarks, track.face_found, audio, FPS, SR)


def test_own_audio_is_in_sync(footage):
    _, track, audio = footage
    offset = estimate(track, audio)
    assert offset.follows and abs(offset.frames) <= 1.0, offset


@pytest.mark.parametrize("seconds", [0.3, -0.2, 0.12])
def test_a_known_delay_is_found_within_a_frame(footage, seconds):
    _, track, audio = footage
    offset = estimate(track, delayed(audio, seconds))
    assert offset.follows and abs(offset.frames - seconds * FPS) <= 1.0, offset


def test_another_stretchs_audio_follows_the_mouth_at_no_lag(footage):
    _, track, _ = footage
    # The same voice and room, other sentences, half a sentence out of step. GRID's sentences
    # share one grammar and nearly one timing, so a stretch a whole number of sentences away
    # (21 s or 75 s here) moves its syllables nearly in step with these lips and scores 4-5.
    start = 63.5
    other = sample_audio(FOOTAGE)[int(start * SR) : int((start + SECONDS) * SR)]
    offset = estimate(track, other)
    assert offset.follows is False, offset
    with pytest.warns(UserWarning, match="does not follow the speaker's mouth"):
        assert offset_to_apply(offset, "auto", "warn", Path("x.mp4")) == 0.0
    with pytest.raises(UnsyncedAudioError, match="x.mp4: the audio does not follow"):
        offset_to_apply(offset, "none", "refuse", Path("x.mp4"))


def test_a_few_seconds_are_too_short_to_tell(footage):
    _, track, audio = footage
    offset = estimate_av_offset(
        track.landmarks[:100], track.face_found[:100], audio[: 4 * SR], FPS, SR
    )
    assert offset.confidence is None and offset.follows is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        assert offset_to_apply(offset, "none", "refuse", Path("x.mp4")) == 0.0
    with pytest.warns(UserWarning, match="too short to estimate"):
        assert offset_to_apply(offset, "auto", "warn", Path("x.mp4")) == 0.0
    assert offset_to_apply(offset, 3, "warn", Path("x.mp4")) == 3.0  # given: applied as given


def test_preprocess_reports_warns_and_corrects_a_delay(footage, tmp_path):
    clip, _, audio = footage
    late = write_clip(
        tmp_path / "late.mp4", list(iter_frames(clip, FPS)), audio=delayed(audio, 0.3)
    )
    overrides = ["speaker=alice", "audio=mel", f"speaker.videos=[{late}]"]
    with pytest.warns(UserWarning, match=r"late.mp4: the audio is \+7\.\d frames off the lips"):
        preprocess(compose_config("preprocess", [*overrides, f"paths.cache_dir={tmp_path / 'a'}"]))
    report = json.loads((tmp_path / "a/alice/sources/late/quality.json").read_text())
    assert abs(report["av_offset_frames"] - 7.5) <= 1.0 and report["av_follows_mouth"]
    assert report["av_offset_applied_frames"] == 0.0  # reported, not applied unless asked

    cfg = compose_config(
        "preprocess", [*overrides, f"paths.cache_dir={tmp_path / 'b'}", "preprocess.av_offset=auto"]
    )
    preprocess(cfg)
    corrected = json.loads((tmp_path / "b/alice/sources/late/quality.json").read_text())
    assert corrected["av_offset_applied_frames"] == report["av_offset_frames"]
    late_levels = np.load(tmp_path / "a/alice/sources/late/levels_dbfs.npy")
    fixed_levels = np.load(tmp_path / "b/alice/sources/late/levels_dbfs.npy")
    # the corrected cache's frame k holds the late soundtrack's frame k + ~7.5
    lags = range(-15, 16)
    match = [
        np.corrcoef(fixed_levels[15:-15], np.roll(late_levels, -lag)[15:-15])[0, 1] for lag in lags
    ]
    assert lags[int(np.argmax(match))] in (7, 8)


@pytest.mark.parametrize(
    ("key", "value"), [("av_offset", "sometimes"), ("on_unsynced", "ignore"), ("on_truncated", 1)]
)
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"preprocess.{key}="):
        preprocess_settings(**{key: value})
