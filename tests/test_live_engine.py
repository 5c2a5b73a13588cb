"""The live render engine, without a network: one clock for audio and video, the idle loop,
talking frames that touch only the mouth, interrupts, batching across sessions, bad PCM."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casync.audio.frontend import SAMPLE_RATE
from casync.live.avatar import LiveAvatar
from casync.live.engine import Engine, LiveModel, SessionsFull
from tests.live_support import short_clip, speech, tiny_checkpoint

SPF = 640  # samples per 40 ms frame at 16 kHz


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def model_and_avatar(tmp_path_factory):
    work = tmp_path_factory.mktemp("live_engine")
    model = LiveModel.from_checkpoint(tiny_checkpoint(work / "tiny.ckpt"))
    avatar = LiveAvatar.from_video("s1", model.generator, short_clip(work / "clip.mp4", 1.0))
    return model, avatar


def open_session(model_and_avatar, clock=None, **engine_options):
    model, avatar = model_and_avatar
    engine = Engine(model, clock=clock or FakeClock(), **engine_options)
    frames, events = [], []
    session = engine.open(avatar, frames.append, events.append)
    return engine, session, frames, events


def run(engine, ticks: int, clock: FakeClock | None = None, feed=None) -> None:
    for _ in range(ticks):
        if feed is not None:
            feed()
        engine.tick()
        if clock is not None:
            clock.now += 0.04


def test_idle_frames_are_the_idle_loop_with_silence(model_and_avatar):
    engine, _, frames, events = open_session(model_and_avatar)
    avatar = model_and_avatar[1]
    run(engine, 60)
    lo, hi = avatar.idle_range
    expected = lo + np.concatenate([np.arange(hi - lo), np.arange(hi - lo - 2, 0, -1)] * 2)[:60]
    assert [f.source_index for f in frames] == list(expected)
    for f in frames:
        assert not f.talking
        assert f.image is avatar.frame(f.source_index)  # the source frame itself, no copy
        assert f.audio.dtype == np.int16 and f.audio.shape == (SPF,) and not f.audio.any()
    assert events == []


def test_an_idle_loop_that_talks_shows_a_resting_mouth_generated_from_silence(model_and_avatar):
    """Footage without a pause loops its calmest stretch of speech: idle frames then carry the
    mouth the network draws for silence, pasted on the loop's frame (the rest of it untouched)."""
    from dataclasses import replace

    model, source_avatar = model_and_avatar
    avatar = replace(source_avatar, rest=None)
    assert not avatar.loop_talks  # a plain video: it loops as it is
    avatar.rest = model.rest_mouths(avatar)
    lo, hi = avatar.idle_range
    assert avatar.rest.shape == (hi - lo, model.crop_size, model.crop_size, 3)
    engine = Engine(model, clock=FakeClock())
    frames = []
    engine.open(avatar, frames.append, lambda e: None)
    run(engine, 10)

    def warped_alpha(index: int) -> np.ndarray:
        transform = np.asarray(avatar.source.transforms[index], np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(model.blender.alpha, transform, avatar.frame_size, flags=flags)

    for f in frames:
        source = avatar.frame(f.source_index).astype(np.int16)
        assert not f.talking
        alpha, change = warped_alpha(f.source_index), np.abs(f.image.astype(np.int16) - source)
        outside, inside = change[alpha == 0].max(), change[alpha > 0.5].mean()
        assert outside <= 1 and inside > 5, (outside, inside)  # the random net's "rest"


def test_audio_and_video_share_one_clock(model_and_avatar):
    engine, session, frames, events = open_session(model_and_avatar)
    pushed = speech()
    session.push_audio(pushed)
    session.flush()
    run(engine, 80)
    # N frames <-> N * 640 samples, and the pushed speech plays exactly once, in order, in them.
    audio = np.concatenate([f.audio for f in frames])
    assert len(frames) == 80 and len(audio) == 80 * SPF
    start = [e["type"] for e in events].index("speech_started")
    assert [e["type"] for e in events] == ["speech_started", "speech_ended"]
    first = next(i for i, f in enumerate(frames) if f.audio.any())
    played = audio[first * SPF : first * SPF + len(pushed)].astype(np.float32) / 32767
    assert np.abs(played - np.clip(pushed, -1, 1)).max() < 1e-3
    assert not audio[first * SPF + len(pushed) :].any()
    assert start == 0 and events[1]["frames"] == round(len(pushed) / SPF)
    # The head never left its loop: talking or not, the source index is the idle ping-pong.
    avatar = model_and_avatar[1]
    assert [f.source_index for f in frames] == [avatar.idle_index(t) for t in range(80)]


def test_talking_frames_change_only_the_mouth(model_and_avatar):
    model, avatar = model_and_avatar
    engine, session, frames, _ = open_session(model_and_avatar)
    session.push_audio(speech())
    run(engine, 20)
    talking = [f for f in frames if f.talking]
    assert len(talking) >= 10
    width, height = avatar.frame_size
    for f in talking:
        changed = np.abs(f.image.astype(int) - avatar.frame(f.source_index)).max(axis=2) > 0
        # The blend's alpha (the checkpoint's mouth region, feathered) warped into the frame.
        transform = np.asarray(avatar.source.transforms[f.source_index], np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        alpha = cv2.warpAffine(model.blender.alpha, transform, (width, height), flags=flags)
        region = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert changed.any() and not (changed & ~region).any()
        assert region.mean() < 0.2  # the mouth region, not the face


def test_mouth_fades_in_and_out_over_three_frames(model_and_avatar):
    engine, session, frames, _ = open_session(model_and_avatar)
    session.push_audio(speech(0.8))
    session.flush()
    weights = []
    for _ in range(40):
        plan_weights = []
        original = session.plan

        def plan(original=original, plan_weights=plan_weights):
            p = original()
            plan_weights.append(p.weight)
            return p

        session.plan = plan
        engine.tick()
        session.plan = original
        weights.extend(plan_weights)
    rising = [w for w in weights if 0 < w < 1]
    assert rising[:2] == pytest.approx([1 / 3, 2 / 3])
    assert rising[-2:] == pytest.approx([2 / 3, 1 / 3])
    assert weights[-1] == 0 and not frames[-1].talking


def test_interrupt_returns_to_idle_within_300_ms(model_and_avatar):
    clock = FakeClock()
    engine, session, frames, events = open_session(model_and_avatar, clock)
    session.push_audio(speech())
    run(engine, 15, clock)
    assert frames[-1].talking
    session.clear_buffer()
    at = len(frames)
    run(engine, 10, clock)
    idle = next(i for i, f in enumerate(frames[at:]) if not f.talking)
    assert idle * 40 <= 300 - 40  # the tick that shows it included
    assert all(not f.talking and not f.audio.any() for f in frames[at + idle :])
    interrupted = [e for e in events if e["type"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["latency_ms"] <= 300
    assert session.queued_s() == 0


def test_interrupt_drops_the_batch_in_flight(model_and_avatar):
    model, _ = model_and_avatar
    engine, session, frames, _ = open_session(model_and_avatar)
    session.push_audio(speech())
    generate = model.generate

    def interrupted_generate(*args):
        session.clear_buffer()  # arrives while the batch is being generated
        return generate(*args)

    while not frames or not frames[-1].audio.any():
        model.generate = interrupted_generate
        try:
            engine.tick()
        finally:
            model.generate = generate
    assert not frames[-1].talking  # the crop made for dropped speech is never shown
    run(engine, 5)
    assert not any(f.talking or f.audio.any() for f in frames[-5:])


def test_bad_pcm_is_an_error_event_and_the_session_lives_on(model_and_avatar):
    engine, session, frames, events = open_session(model_and_avatar)
    bad = [
        (np.full(SPF, np.nan, np.float32), SAMPLE_RATE),
        (np.zeros((SPF, 2), np.float32), SAMPLE_RATE),
        (np.zeros(SPF, np.int32), SAMPLE_RATE),
        (np.zeros(SPF, np.float32), 44_100),
        (np.full(SPF, 1000.0, np.float32), SAMPLE_RATE),
    ]
    for samples, rate in bad:
        assert session.push_audio(samples, rate) is False
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == len(bad) and all(e["message"] for e in errors)
    assert "non-finite" in errors[0]["message"] and "44100 Hz" in errors[3]["message"]
    session.push_audio((speech(0.6) * 32767).astype(np.int16))
    session.flush()
    run(engine, 30)
    assert any(f.talking for f in frames)
    assert [e["type"] for e in events[len(bad) :]] == ["speech_started", "speech_ended"]


def test_talking_sessions_share_one_batch_and_idle_ones_cost_none(model_and_avatar):
    model, avatar = model_and_avatar
    engine, first, _, _ = open_session(model_and_avatar)
    outputs = {}
    sessions = [first] + [
        engine.open(avatar, outputs.setdefault(i, []).append, lambda e: None) for i in range(3)
    ]
    sizes = []
    generate = model.generate

    def counted(items):
        sizes.append(len(items))
        return generate(items)

    model.generate = counted
    try:
        run(engine, 3)  # all idle: no network
        assert sizes == []
        for s in sessions[:3]:
            s.push_audio(speech())
        run(engine, 12)
    finally:
        model.generate = generate
    assert max(sizes) == 3 and sizes.count(3) >= 6
    # Sessions on one avatar share its face features: each source frame is encoded once.
    assert avatar.face_cache.hits > 0 and len(avatar.face_cache) <= avatar.source.n_frames
    assert all(len(frames) == 15 for frames in outputs.values())


def test_speech_in_real_time_leaves_as_soon_as_its_window_is_complete(model_and_avatar):
    clock = FakeClock()
    engine, session, frames, events = open_session(model_and_avatar, clock)
    audio = speech()
    chunks = iter(np.array_split(audio, len(audio) // 320))

    def feed():  # a microphone: 20 ms of audio every 20 ms, silence after the speech
        for _ in range(2):
            session.push_audio(next(chunks, np.zeros(320, np.float32)), gate=True)

    run(engine, 60, clock, feed)
    first = next(i for i, f in enumerate(frames) if f.talking)
    # Frame 0 needs audio to ~115 ms past its centre (20 ms) with log-mel: ready on tick 4.
    assert first <= 5
    latency = engine.metrics.percentiles()
    assert latency[95] <= 200  # simulated time: window lookahead + one tick, no compute
    # The microphone's trailing silence ends the speech; silence alone is never queued.
    assert [e["type"] for e in events] == ["speech_started", "speech_ended"]
    assert session.queued_s() == 0


def test_a_slow_machine_drops_pictures_but_its_sound_keeps_the_wall_clock(
    model_and_avatar, monkeypatch
):
    """The real clock, mouths that take 100 ms to generate (2.5 ticks): each second still sends
    a second of sound, all of the speech in order with nothing lost or repeated, while pictures
    are skipped. (A stream that slipped sent 40 ms per 100 ms: the browser plays concealment
    for each slip and its sound falls ever further behind the mouth.)"""
    import asyncio
    import time

    model = model_and_avatar[0]
    generate = model.generate

    def slow_generate(items):
        time.sleep(0.1)
        return generate(items)

    monkeypatch.setattr(model, "generate", slow_generate)
    engine, session, frames, _ = open_session(model_and_avatar, time.monotonic)
    said = speech()
    session.push_audio(said)
    session.flush()

    async def run_for(seconds: float) -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        started = time.monotonic()
        await asyncio.sleep(seconds)
        stop.set()
        await task
        return time.monotonic() - started

    elapsed = asyncio.run(run_for(1.5))
    assert len(frames) >= 0.85 * elapsed * 25, f"{len(frames)} ticks in {elapsed:.2f} s"
    pictures = [f for f in frames if f.image is not None]
    assert 0 < len(pictures) < 0.6 * len(frames)  # one tick in ~3 was drawn
    assert engine.metrics.dropped_frames == len(frames) - len(pictures)
    sound = np.concatenate([f.audio for f in frames]).astype(np.float32) / 32767
    start = int(np.flatnonzero(np.abs(sound) > 0)[0])
    played = sound[start : start + min(len(said), len(sound) - start)]
    first = int(np.flatnonzero(np.abs(said) > 0)[0])
    assert np.abs(played - said[first : first + len(played)]).max() < 1e-3


def test_a_full_engine_says_so_and_a_closed_session_frees_its_place(model_and_avatar):
    engine, session, _, _ = open_session(model_and_avatar, max_sessions=1)
    with pytest.raises(SessionsFull, match="max_sessions"):
        engine.open(model_and_avatar[1], print, print)
    session.push_audio(speech())
    engine.close(session.id)
    engine.close(session.id)
    assert engine.sessions == {} and session.closed and session.queued_s() == 0
    engine.open(model_and_avatar[1], print, print)


def test_a_microphone_that_never_stops_keeps_the_session_small(model_and_avatar):
    clock = FakeClock()
    engine, session, _, _ = open_session(model_and_avatar, clock)
    noise = (np.random.default_rng(0).standard_normal(320) * 0.05).astype(np.float32)

    def feed():  # room noise above the silence threshold: one utterance that never ends
        session.push_audio(noise, gate=True)
        session.push_audio(noise, gate=True)

    run(engine, 300, clock, feed)
    (utterance,) = session._queue
    assert len(utterance._pushes) < 20 and len(utterance._pcm) < 16_000
    assert len(utterance.features._audio) < 3 * SAMPLE_RATE


def test_warm_up_calibrates_int8_before_the_first_session(tmp_path, monkeypatch):
    """int8 quantizes each half on its first batch: warm-up makes that batch real idle frames
    and real speech before any session, and a later start on the same weights reuses the graphs
    (no stall on a session's first words)."""
    import casync.inference.precision as precision
    from casync.inference.precision import Int8Generator

    checkpoint, graphs = tiny_checkpoint(tmp_path / "tiny.ckpt"), tmp_path / "graphs"
    model = LiveModel.from_checkpoint(checkpoint, precision="int8", cache_dir=str(graphs))
    if not isinstance(model.crops.net, Int8Generator):
        pytest.skip("this CPU has no int8 dot products: int8 falls back to fp32")
    avatar = LiveAvatar.from_video("s1", model.generator, short_clip(tmp_path / "c.mp4", 1.0))
    assert not graphs.exists() or not any(graphs.iterdir())
    model.warm_up(avatar, speech(), batch=4)
    assert sorted(p.name.split(".")[1] for p in graphs.glob("*.int8.onnx")) == ["decode", "face"]

    def no_quantizing(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(precision, "quantize_half", no_quantizing)
    again = LiveModel.from_checkpoint(checkpoint, precision="int8", cache_dir=str(graphs))
    fresh = LiveAvatar.from_video("s1", again.generator, short_clip(tmp_path / "d.mp4", 1.0))
    again.warm_up(fresh, speech(), batch=4)
    with pytest.raises(ValueError, match="shorter than 16 frames"):
        again.warm_up(fresh, speech(0.3), batch=16)
