"""Audio front ends: HuBERT through the real from_pretrained path (tiny random weights saved to
disk), the offline mel front end, and per-frame window alignment."""

import numpy as np
import pytest
from conftest import CLIP
from transformers import HubertConfig, HubertModel

from casync.audio import HubertFrontEnd, MelFrontEnd, frame_windows
from casync.audio.frontend import MissingWeightsError
from casync.audio.windows import window_indices


@pytest.fixture(scope="module")
def tiny_hubert_dir(tmp_path_factory):
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    path = tmp_path_factory.mktemp("hubert_tiny")
    HubertModel(config).save_pretrained(path)
    return path


def test_hubert_from_local_directory(tiny_hubert_dir):
    frontend = HubertFrontEnd(str(tiny_hubert_dir), feature_dim=32)
    wave = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    features = frontend(wave)
    assert features.shape == (99, 32)  # 2 s at 50 Hz (HuBERT's conv stack drops the last frame)
    assert frontend.describe()["name"] == "hubert"
    assert not any(p.requires_grad for p in frontend.model.parameters())  # frozen


def test_hubert_chunking_covers_long_audio(tiny_hubert_dir):
    frontend = HubertFrontEnd(str(tiny_hubert_dir), feature_dim=32, chunk_seconds=1.0)
    wave = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32)
    assert abs(len(frontend(wave)) - 150) <= 3


def test_hubert_feature_dim_mismatch_names_the_key(tiny_hubert_dir):
    with pytest.raises(ValueError, match="audio.feature_dim=32"):
        HubertFrontEnd(str(tiny_hubert_dir), feature_dim=1024)


def test_missing_hubert_weights_name_the_config_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="audio.model_name_or_path"):
        HubertFrontEnd(str(tmp_path / "no_such_model"))


def test_mel_is_50hz_and_reacts_to_sound():
    frontend = MelFrontEnd(n_mels=80)
    silence = np.zeros(16000, dtype=np.float32)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    quiet, loud = frontend(silence), frontend(tone)
    assert quiet.shape == (51, 80)
    assert (loud.max(axis=1) > quiet.max() + 10).all()  # the 440 Hz band lights up


def test_windows_are_centred_on_each_video_frame():
    features = np.arange(100, dtype=np.float32)[:, None]  # feature index as value
    windows = frame_windows(features, n_frames=50, fps=25, window=10)
    assert windows.shape == (50, 10, 1)
    # frame 10 is centred at 0.42 s = feature 21: window covers 16..25
    assert windows[10, :, 0].tolist() == list(range(16, 26))
    assert windows[0, 0, 0] == 0 and windows[-1, -1, 0] == 99  # edges repeat, never wrap


def test_window_indices_stay_in_range():
    idx = window_indices(n_frames=7, fps=25, window=16, feature_rate=50, n_features=5)
    assert idx.min() == 0 and idx.max() == 4


def test_cache_windows_equal_what_inference_computes(s1_cache, media_dir):
    """The one audio-feature path: the cache's windows are FrameFeatures' for the same file,
    bit for bit (before they shared code, 5 of the 160,000 float16 values differed)."""
    from casync.data.cache import open_cache
    from casync.inference.features import FrameFeatures
    from casync.media.audio import load_audio

    (source,) = open_cache(*s1_cache).sources
    features = FrameFeatures(MelFrontEnd(), fps=25, silence_dbfs=None)
    for piece in np.array_split(load_audio(media_dir / CLIP, 16_000), 37):
        features.push(piece)  # fed as a stream would be
    features.finish()
    windows, _ = features.take(0, source.n_frames)
    np.testing.assert_array_equal(source.audio, windows.astype(np.float16))
