"""The chunk contract of streamed audio (`casync.audio.pcm`): what arrives from a network is
converted when unambiguous (int16, float64) and refused otherwise, never silently misread
(stereo interleaved into twice the frames, int16 read as floats of +-32767, NaN)."""

from __future__ import annotations

import numpy as np
import pytest

from casync.audio import MelFrontEnd
from casync.audio.pcm import PCMError, pcm_chunk
from casync.contract import save_generator_checkpoint
from casync.inference import Synthesizer
from casync.inference.features import FrameFeatures
from casync.model import CASyncNet

SR, FPS = 16_000, 25.0


def speech_like(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def features_of(chunks) -> tuple[int, np.ndarray]:
    features = FrameFeatures(MelFrontEnd(), FPS)
    for chunk in chunks:
        features.push(chunk)
    features.finish()
    windows, _ = features.take(0, features.total_frames())
    return features.total_frames(), windows


def test_int16_float64_and_column_chunks_give_the_float32_features():
    audio = speech_like()
    pieces = np.array_split(audio, 7)
    frames, expected = features_of(pieces)
    assert frames == 25
    as_int16 = [np.round(p * 32767).astype(np.int16) for p in pieces]
    # int16 rounding moves quiet log-mel bins a little; read as floats of +-32767 it was +20.8
    np.testing.assert_allclose(features_of(as_int16)[1], expected, atol=0.1)
    assert np.array_equal(features_of([p.astype(np.float64) for p in pieces])[1], expected)
    assert np.array_equal(features_of([p[:, None] for p in pieces])[1], expected)


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (np.zeros((800, 2), np.float32), r"shape \(800, 2\).*stereo\? mix it to mono"),
        (np.zeros((2, 800), np.float32), r"shape \(2, 800\)"),
        (np.zeros(800, np.int32), r"dtype int32: send int16 PCM or float32"),
        (np.zeros(800, np.uint8), r"dtype uint8"),
        (
            np.array([0.1, np.nan, np.inf], np.float32),
            r"2 non-finite samples \(the first at index 1",
        ),
        (np.full(800, 12000.0, np.float32), r"peaks at 12000.*send them as int16"),
    ],
)
def test_ambiguous_or_broken_chunks_are_refused_with_what_to_do(chunk, message):
    with pytest.raises(PCMError, match=message):
        pcm_chunk(chunk)
    features = FrameFeatures(MelFrontEnd(), FPS)
    with pytest.raises(PCMError):
        features.push(chunk)
    assert features.n_samples == 0  # nothing of the refused chunk was kept


def test_a_stereo_stream_no_longer_doubles_the_frames():
    """3 s of stereo used to become 150 frames: now it is refused, and its mono mix gives 75."""
    stereo = np.stack([speech_like(3.0)] * 2, axis=1)
    with pytest.raises(PCMError, match="stereo"):
        features_of(np.array_split(stereo, 5))
    assert features_of(np.array_split(stereo.mean(axis=1), 5))[0] == 75


def test_the_stream_refuses_another_rate(tmp_path):
    model = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
    mel = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
    save_generator_checkpoint(tmp_path / "m.ckpt", CASyncNet(**model), model, mel)
    synthesizer = Synthesizer.from_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(PCMError, match="44100 Hz: chunks must be 16000 Hz mono; resample"):
        next(synthesizer.stream([speech_like()], sample_rate=44_100))
