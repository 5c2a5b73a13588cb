"""Memory and disk follow the output, not the source: frames kept for revisiting stay raw only
within a budget and are spilled as JPEG past it; a non-looping output of a large source keeps
nothing and decodes once more. Media: the GRID sample the repository carries (assets/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from clips import sample_audio, sample_frames, write_clip

import casync.inference.batch as batch
import casync.inference.source as source_module
from casync.contract import save_generator_checkpoint
from casync.inference import Synthesizer
from casync.inference.batch import frames_to_keep
from casync.inference.frame_store import FrameStore
from casync.media.video import iter_frames
from casync.model import CASyncNet

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "grid_s1_sample.mp4"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_frames_past_the_budget_are_spilled_as_jpeg_not_raw():
    frames = sample_frames(SAMPLE, 20)  # 360x288: 311 KB raw each
    store = FrameStore(max_ram_bytes=5 * frames[0].nbytes)
    for frame in frames:
        store.append(frame)
    assert len(store) == 20 and store._ram_bytes == 5 * frames[0].nbytes
    assert store.spilled_bytes < 15 * frames[0].nbytes / 4  # JPEG, not raw
    assert all(np.array_equal(store[i], frames[i]) for i in range(5))  # raw within the budget
    assert min(psnr(store[i], frames[i]) for i in range(5, 20)) > 40
    assert np.array_equal(store[-1], store[19])
    with pytest.raises(IndexError):
        store[20]
    store.close()


def test_a_short_output_of_a_large_source_keeps_no_frames(tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", sample_frames(SAMPLE, 50))  # 2 s, 50 frames
    assert frames_to_keep(clip, 25, 25.0) == 25  # fits the budget: kept, no second decode
    monkeypatch.setattr(batch, "DEFAULT_RAM_BYTES", 10 * 360 * 288 * 3)
    assert frames_to_keep(clip, 25, 25.0) == 0  # 25 frames are past it: decoded again
    assert frames_to_keep(clip, 60, 25.0) == 60  # a looping output revisits them: kept


@pytest.fixture(scope="module")
def looping_job(tmp_path_factory):
    """1 s of the GRID sample driven by 2.4 s of its own speech: the output ping-pongs."""
    work = tmp_path_factory.mktemp("budget")
    clip = write_clip(work / "clip.mp4", sample_frames(SAMPLE, 25), audio=sample_audio(SAMPLE, 1.0))
    speech = work / "speech.wav"
    soundfile.write(speech, sample_audio(SAMPLE, 2.4), 16_000)
    save_generator_checkpoint(work / "m.ckpt", CASyncNet(**TINY), TINY, MEL)
    return work, clip, speech


def test_a_looping_output_past_the_budget_matches_the_unbounded_one(looping_job, monkeypatch):
    work, clip, speech = looping_job
    synthesizer = Synthesizer.from_checkpoint(work / "m.ckpt", progress=False)
    synthesizer.synthesize(clip, speech, work / "unbounded.mp4")
    monkeypatch.setattr(source_module, "DEFAULT_RAM_BYTES", 8 * 360 * 288 * 3)
    monkeypatch.setattr(batch, "DEFAULT_RAM_BYTES", 8 * 360 * 288 * 3)
    original = source_module.FrameStore.__init__
    stores = []

    def budgeted(self, max_ram_bytes=0, spill_quality=95):
        original(self, 8 * 360 * 288 * 3, spill_quality)
        stores.append(self)

    monkeypatch.setattr(source_module.FrameStore, "__init__", budgeted)
    result = synthesizer.synthesize(clip, speech, work / "bounded.mp4")
    assert result["frames"] == 60 and result["source_frames"] == 25
    assert stores and max(s.spilled_bytes for s in stores) > 0  # the budget was exceeded
    bounded = list(iter_frames(work / "bounded.mp4", 25.0))
    unbounded = list(iter_frames(work / "unbounded.mp4", 25.0))
    assert len(bounded) == len(unbounded) == 60
    assert min(psnr(a, b) for a, b in zip(bounded, unbounded, strict=True)) > 35
