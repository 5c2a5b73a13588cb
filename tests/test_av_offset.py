"""Audio-video offset estimation on real footage: 20 s of macron_50s.mp4 with its own audio
(offset ~0), shifted by known amounts (found within a frame), with another stretch's audio
(flagged), and end to end through preprocessing (reported, warned, corrected on request)."""

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


def delayed(audio: np.ndarray, seconds: float) -> np.ndarray:
    """The soundtrack `seconds` late (negative: early), same length."""
    return shift_audio(audio, -seconds * FPS, FPS, SR)


@pytest.fixture(scope="module")
def macron(sample_dir, tmp_path_factory) -> tuple[Path, object, np.ndarray]:
    """(20 s clip, its face track, its audio) from the first 20 s of macron_50s.mp4."""
    source = sample_dir / "video" / "macron_50s.mp4"
    frames = []
    for frame in iter_frames(source, FPS):
        frames.append(frame[::2, ::2].copy())  # 256x256: the face still fills the frame
        if len(frames) == SECONDS * FPS:
            break
    audio = sample_audio(source, SECONDS)
    clip = write_clip(tmp_path_factory.mktemp("macron") / "macron.mp4", frames, audio=audio)
    return clip, track_video(clip, FPS, crop_size=160, smoothing=1.5), audio


def estimate(track, audio: np.ndarray) -> AVOffset:
    return estimate_av_offset(track.landmarks, track.face_found, audio, FPS, SR)


def test_own_audio_is_in_sync(macron):
    _, track, audio = macron
    offset = estimate(track, audio)
    assert offset.follows and abs(offset.frames) <= 1.0, offset


@pytest.mark.parametrize("seconds", [0.3, -0.2, 0.12])
def test_a_known_delay_is_found_within_a_frame(macron, seconds):
    _, track, audio = macron
    offset = estimate(track, delayed(audio, seconds))
    assert offset.follows and abs(offset.frames - seconds * FPS) <= 1.0, offset


def test_another_stretchs_audio_follows_the_mouth_at_no_lag(macron, sample_dir):
    _, track, _ = macron
    other = sample_audio(sample_dir / "video" / "macron_50s.mp4")[25 * SR : (25 + SECONDS) * SR]
    offset = estimate(track, other)  # the same voice and room, other words
    assert offset.follows is False, offset
    with pytest.warns(UserWarning, match="does not follow the speaker's mouth"):
        assert offset_to_apply(offset, "auto", "warn", Path("x.mp4")) == 0.0
    with pytest.raises(UnsyncedAudioError, match="x.mp4: the audio does not follow"):
        offset_to_apply(offset, "none", "refuse", Path("x.mp4"))


def test_a_few_seconds_are_too_short_to_tell(macron):
    _, track, audio = macron
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


def test_preprocess_reports_warns_and_corrects_a_delay(macron, tmp_path):
    clip, _, audio = macron
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
