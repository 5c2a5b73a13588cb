"""`tests/live_sync.py`'s measure, on a synthetic session whose offset is known: the browser
test's verdict is only as good as it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.live_sync import SentFrame, measure_playout

FIRST_TICK, TICKS, LOOP = 100, 200, 50


def session(rng: np.random.Generator, repeat: bool = False) -> list[SentFrame]:
    """Ticks 100-299 of a 50-frame idle loop, talking (noise bursts of varied level) at 150-249;
    `repeat`: ticks 200-249 say again what 150-199 said."""
    sent = []
    for tick in range(FIRST_TICK, FIRST_TICK + TICKS):
        talking = 150 <= tick < 250
        gain = 10 ** rng.uniform(-2.5, -0.5) if talking else 0.0
        audio = (rng.standard_normal(640) * gain * 8000).astype(np.int16)
        sent.append(SentFrame(tick, tick % LOOP, audio, talking))
    if repeat:
        for k in range(50):
            sent[100 + k].audio = sent[50 + k].audio.copy()
    return sent


def playout(
    sent, video_delay_ms, audio_delay_ms, latency_s, packets=range(40, 360), origin=2**32 - 9600
) -> dict:
    """What a page would report: frames presented video_delay after their tick, each 20 ms
    packet played audio_delay after its chunk; aiortc's packet n carries chunk n - 1's sound
    with chunk n's level; RTP timestamps wrap."""
    frames = [
        [1000 + (f.tick - FIRST_TICK) * 40 + video_delay_ms, f.source_index] for f in sent[20:180]
    ]
    chunks = np.concatenate([f.audio for f in sent]).reshape(-1, 320).astype(np.float64)
    rms = np.sqrt(np.mean((chunks / 32767) ** 2, axis=1))
    sound = []
    for n in packets:
        level = rms[n] if rms[n] > 0 else 0.0
        at = 1000 + (n - 1) * 20 + audio_delay_ms
        rtp = (origin + 960 * n) % 2**32
        sound += [[at, rtp, level], [at + 5, rtp, level]]  # polled twice
    return {"frames": frames, "sound": sound, "output_latency_s": latency_s}


def test_the_measure_finds_a_known_offset():
    sent = session(np.random.default_rng(0))
    measure = measure_playout(playout(sent, 150, 100, 0.030), sent)
    assert measure.placed == measure.frames == 160
    assert len(measure.offsets_ms) == 100  # the talking ticks
    assert np.allclose(measure.offsets_ms, 150 - 100 - 30, atol=1)
    early = measure_playout(playout(sent, 40, 160, 0.0), sent)
    assert np.allclose(early.offsets_ms, 40 - 160, atol=1)


def test_the_measure_refuses_speech_it_could_place_twice():
    sent = session(np.random.default_rng(1), repeat=True)
    record = playout(sent, 150, 100, 0.0, packets=range(190, 320))  # the second saying
    with pytest.raises(AssertionError, match="two places"):
        measure_playout(record, sent)
