"""Bad driving audio is found when it is loaded, not after every frame is rendered: NaN/inf
samples are an error naming the file and the time; channels that cancel in the mono mix and
float samples past full scale are warned about."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile

from casync.media import UnreadableMediaError
from casync.media.audio import load_audio

SR = 16_000


def tone(seconds: float = 1.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_an_error_naming_the_file_and_the_time(tmp_path, bad):
    audio = tone()
    audio[8000:8100] = bad
    path = tmp_path / "speech.wav"
    soundfile.write(path, audio, SR, subtype="FLOAT")
    with pytest.raises(
        UnreadableMediaError,
        match=r"speech\.wav.*100 audio samples are NaN or infinite \(the first at 0\.50 s\)",
    ):
        load_audio(path, SR)


def test_stereo_whose_channels_cancel_is_warned_about(tmp_path, caplog):
    path = tmp_path / "inverted.wav"
    soundfile.write(path, np.stack([tone(), -tone()], axis=1), SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="casync"):
        audio = load_audio(path, SR)
    assert np.abs(audio).max() < 1e-6  # what the mouth would have been driven by
    assert "inverted.wav: its channels cancel when mixed to mono" in caplog.text
    caplog.clear()
    soundfile.write(path, np.stack([tone(), tone()], axis=1), SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="casync"):
        load_audio(path, SR)
    assert caplog.text == ""  # ordinary stereo says nothing


def test_float_audio_past_full_scale_is_warned_about(tmp_path, caplog):
    path = tmp_path / "hot.wav"
    soundfile.write(path, tone(level=1.6), SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="casync"):
        load_audio(path, SR)
    assert "hot.wav: float samples peak at 1.60 (4.1 dB past full scale)" in caplog.text
    caplog.clear()
    soundfile.write(path, tone(level=0.9), SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="casync"):
        load_audio(path, SR)
    assert caplog.text == ""
