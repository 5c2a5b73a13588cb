"""CASync Live in a real browser: Debian's Chromium, driven by Playwright, with a fake microphone
fed from a WAV of real speech with pauses. The page records every frame it presents; the test
measures on those frames.

The checkpoint is a tiny *random* network (the tests must not train), so the mouth it paints
is noise, not speech: what the test can and does check is that frames arrive, that the mouth
region differs from the idle source frame while the WAV speaks and equals it (up to the video
codec) in its pauses, that an interrupt returns the picture to idle in time, and that a second
page gets its own session. Lip landmarks on a trained avatar are the benchmark's.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from casync.audio.frontend import SAMPLE_RATE
from casync.live.avatar import LiveAvatar
from casync.live.engine import Engine, LiveModel
from casync.live.server import LiveServer
from tests.clips import sample_audio, sample_frames, write_clip
from tests.live_support import (
    REPO,
    SAMPLE,
    ServerThread,
    short_clip,
    speech,
    speech_with_pauses,
    tiny_checkpoint,
)

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file() or shutil.which("chromium") is None,
        reason="Chromium is not installed (apt-get install -y chromium; CI installs it)",
    ),
]
PAUSE_S, REPEATS = 1.5, 2
TALKING = 12.0  # mean |received - idle source| in the mouth region above this: a generated mouth


@pytest.fixture(scope="module", autouse=True)
def live_threads():
    """The network's torch threads as `python -m casync.live` sets them (conf/live.yaml): on 2
    cores beside a browser, two threads would stall each other's ticks (measured: a talking
    tick 19 ms with one thread, 170 ms with two while the other core is busy)."""
    import torch
    from omegaconf import OmegaConf

    before = torch.get_num_threads()
    torch.set_num_threads(OmegaConf.load(REPO / "conf" / "live.yaml").threads)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    work = tmp_path_factory.mktemp("live_browser")
    model = LiveModel.from_checkpoint(tiny_checkpoint(work / "tiny.ckpt"))
    avatar = LiveAvatar.from_video("s1", model.generator, short_clip(work / "clip.mp4", 1.0))
    thread = ServerThread(LiveServer(Engine(model, max_sessions=3), {"s1": avatar}))
    wav = work / "speech_with_pauses.wav"
    soundfile.write(wav, speech_with_pauses(PAUSE_S, REPEATS), SAMPLE_RATE, subtype="PCM_16")
    yield thread, model, avatar, wav
    thread.stop()


@pytest.fixture(scope="module")
def browser(live):
    from playwright.sync_api import sync_playwright

    wav = live[3]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        yield browser
        browser.close()


class MouthMeter:
    """How far a received frame's mouth is from the idle source frame it shows."""

    def __init__(self, model, avatar) -> None:
        lo, hi = avatar.idle_range
        width, height = avatar.frame_size
        self.sources = [avatar.frame(i).astype(np.float32) for i in range(lo, hi)]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        self.regions = []
        for i in range(lo, hi):
            transform = np.asarray(avatar.source.transforms[i], np.float64)
            alpha = cv2.warpAffine(model.blender.alpha, transform, (width, height), flags=flags)
            self.regions.append(alpha > 0.5)

    def __call__(self, image: np.ndarray) -> float:
        image = image.astype(np.float32)
        rest = [
            np.abs(image - s)[~r].mean() for s, r in zip(self.sources, self.regions, strict=True)
        ]
        k = int(np.argmin(rest))  # the source frame under it: the best match off the mouth
        self.last = k
        return float(np.abs(image - self.sources[k])[self.regions[k]].mean())


def decode(frames: list[dict]) -> list[np.ndarray]:
    images = []
    for frame in frames:
        data = base64.b64decode(frame["jpeg"].split(",", 1)[1])
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images


def open_page(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("window.casync && window.casync.session !== null", timeout=20_000)
    page.evaluate("window.casync.firstFrame")
    return page


def record_the_microphone_wav(page) -> tuple[list[dict], list[dict]]:
    """(frames, events) the page received while the fake microphone played its whole WAV;
    the page is closed after. Fails unless frames actually arrived."""
    page.evaluate("window.casync.record()")
    cycle_s = PAUSE_S + len(speech()) / SAMPLE_RATE
    page.wait_for_timeout(int((PAUSE_S + REPEATS * cycle_s + 1.0) * 1000))
    page.evaluate("window.casync.stopRecording()")
    frames = page.evaluate("window.casync.frames")
    events = page.evaluate("window.casync.events")
    page.close(run_before_unload=True)
    assert len(frames) >= 100, f"only {len(frames)} frames arrived"
    return frames, events


def test_the_mouth_moves_while_the_microphone_speaks_and_rests_in_its_pauses(live, browser):
    thread, model, avatar, _ = live
    page = open_page(browser, f"{thread.url}/?autostart=1")
    assert page.evaluate("document.getElementById('avatar').muted")  # the mic must not hear it
    frames, events = record_the_microphone_wav(page)
    meter = MouthMeter(model, avatar)
    levels = np.array([meter(image) for image in decode(frames)])
    times = np.array([f["at"] for f in frames])
    # Speech windows as the page saw them: speech_started .. speech_ended events.
    starts = [e["at"] for e in events if e["type"] == "speech_started"]
    ends = [e["at"] for e in events if e["type"] == "speech_ended"]
    assert len(starts) >= 1 and len(ends) >= 1, events
    talking = levels > TALKING
    assert talking.sum() >= 15, f"no generated mouth received (levels {np.round(levels, 1)})"
    inside = np.zeros(len(frames), bool)
    for start in starts:  # the fake microphone loops the WAV: the last speech may be open
        end = min([e for e in ends if e > start], default=np.inf)
        inside |= (times >= start - 200) & (times <= end + 400)  # events and frames race a little
    assert not (talking & ~inside).any(), "a generated mouth outside the speech"
    # The pauses show the idle source, up to the codec.
    quiet = ~inside
    assert quiet.sum() >= 20 and np.median(levels[quiet]) < TALKING / 2


def test_interrupt_returns_the_picture_to_idle_in_time(live, browser):
    thread, model, avatar, _ = live
    page = open_page(browser, thread.url)
    page.evaluate("window.casync.record()")
    wav = Path(live[3]).with_name("say.wav")
    soundfile.write(wav, np.concatenate([speech()] * 3), SAMPLE_RATE, subtype="PCM_16")
    page.set_input_files("#file", str(wav))
    page.wait_for_function(
        "window.casync.events.some(e => e.type === 'speech_started')", timeout=15_000
    )
    page.wait_for_timeout(800)
    page.click("#interrupt")
    page.wait_for_timeout(1500)
    page.evaluate("window.casync.stopRecording()")
    frames = page.evaluate("window.casync.frames")
    events = page.evaluate("window.casync.events")
    page.set_input_files("#file", str(wav))  # the same file again is said again
    page.wait_for_function(
        "window.casync.events.filter(e => e.type === 'speech_started').length >= 2",
        timeout=15_000,
    )
    page.close(run_before_unload=True)
    sent = next(e["at"] for e in events if e["type"] == "interrupt_sent")
    assert any(e["type"] == "interrupted" for e in events)
    assert not any(e["type"] == "speech_ended" for e in events)
    meter = MouthMeter(model, avatar)
    levels = np.array([meter(image) for image in decode(frames)])
    times = np.array([f["at"] for f in frames])
    trace = [(round(t - sent), round(v, 1)) for t, v in zip(times, levels, strict=True)]
    assert (levels[times < sent] > TALKING).sum() >= 3, f"it never talked: {trace} {events}"
    last_talking = times[levels > TALKING].max()
    assert last_talking - sent <= 300, f"the mouth moved {last_talking - sent:.0f} ms on: {trace}"
    assert (times > sent + 300).sum() >= 3  # frames kept coming, idle


def test_a_second_page_gets_its_own_session(live, browser):
    thread = live[0]
    first = open_page(browser, thread.url)
    second = open_page(browser, thread.url)
    ids = [page.evaluate("window.casync.session") for page in (first, second)]
    # Page open (navigation start) -> first frame on screen: 1 s is the benchmark's target.
    assert all(page.evaluate("window.casync.firstFrame") < 3000 for page in (first, second))
    assert ids[0] != ids[1] and set(ids) <= set(thread.server.engine.sessions)
    for page in (first, second):
        page.evaluate("window.casync.record()")
    first.wait_for_timeout(1000)
    counts = [page.evaluate("window.casync.stopRecording()") for page in (first, second)]
    assert min(counts) >= 10, counts
    # A closed tab frees its session (its pagehide beacon), the other one lives on.
    first.close(run_before_unload=True)
    second.wait_for_timeout(1000)
    assert set(thread.server.engine.sessions) == {ids[1]}
    second.close(run_before_unload=True)


BUILTIN = REPO / "assets" / "live"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The built-in avatar (a model trained on the GRID sample), served to the browser."""
    model = LiveModel.from_checkpoint(BUILTIN / "grid_s1_mel.ckpt")
    avatar = LiveAvatar.from_video("builtin", model.generator, BUILTIN / "grid_s1_idle.mp4")
    thread = ServerThread(LiveServer(Engine(model, max_sessions=2), {"builtin": avatar}))
    yield thread, model, avatar
    thread.stop()


def test_the_built_in_avatar_opens_its_mouth_when_the_microphone_speaks(trained, browser):
    """Lip landmarks on the frames the page received: the mouth is open while the WAV speaks
    and closed in its pauses."""
    from casync.evaluation.lip_landmarks import LipLandmarkExtractor, mouth_opening
    from casync.face import cut_crop

    thread, model, avatar = trained
    page = open_page(browser, f"{thread.url}/?autostart=1")
    frames, events = record_the_microphone_wav(page)
    images = decode(frames)
    meter = MouthMeter(model, avatar)
    lo = avatar.idle_range[0]
    crops = []
    for image in images:  # the crop of the source frame under each received frame
        meter(image)
        index = lo + meter.last
        crops.append(cut_crop(image, avatar.source.transforms[index], model.crop_size))
    with LipLandmarkExtractor() as extractor:
        opening = mouth_opening(extractor(np.stack(crops)).points)
    times = np.array([f["at"] for f in frames])
    starts = [e["at"] for e in events if e["type"] == "speech_started"]
    ends = [e["at"] for e in events if e["type"] == "speech_ended"]
    speaking = np.zeros(len(frames), bool)
    for start in starts:
        end = min([e for e in ends if e > start], default=np.inf)
        speaking |= (times >= start + 200) & (times <= end - 400)  # well inside the speech
    quiet = np.ones(len(frames), bool)
    for start in starts:
        end = min([e for e in ends if e > start], default=np.inf)
        quiet &= (times < start - 200) | (times > end + 600)
    assert speaking.sum() >= 15 and quiet.sum() >= 15, (speaking.sum(), quiet.sum(), events)
    talk, rest = np.nanpercentile(opening[speaking], 75), np.nanmedian(opening[quiet])
    print(f"mouth opening: {talk:.3f} speaking (p75), {rest:.3f} in the pauses (median)")
    assert talk > rest + 0.05, f"opening while speaking {talk:.3f}, in the pauses {rest:.3f}"


# -- audio-video sync as the page receives it ----------------------------------------------------
def test_the_page_hears_each_mouth_with_its_own_sound(browser, tmp_path, monkeypatch):
    """What the page plays: each presented video frame's tick from the source-frame index drawn
    on it, each tick's sound placed among the packets the audio receiver played by their audio
    levels; the video must not run ahead of or behind its audio by more than 40 ms (median over
    the talking frames, speech starting 2 s after the page opened).

    A second session is measured when the first misses: on 2 cores shared with other work the
    browser's presentation wanders by +-50 ms from one session to the next (measured with two
    more busy processes beside the test: medians of -49 to +46 ms, while Chrome's own estimate
    said in sync; experiments/2026-12-07_live_av_sync.md). A defect in the product's sync (a
    slipping stream, a wrong aim) misses in both."""
    import os

    import casync.live.server as server_module
    from tests.live_sync import marked, measure_playout, record_playout, tapped_output

    sent: list = []
    monkeypatch.setattr(server_module, "SessionOutput", tapped_output(sent))
    model = LiveModel.from_checkpoint(tiny_checkpoint(tmp_path / "tiny.ckpt"))
    frames = marked(sample_frames(SAMPLE, 50))
    clip = write_clip(tmp_path / "marked.mp4", frames, audio=sample_audio(SAMPLE, 2.0))
    avatar = LiveAvatar.from_video("marked", model.generator, clip)
    model.warm_up(avatar, speech(), 4)  # as the server does: no first-call stall mid-speech
    pause = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    said = np.concatenate([pause, speech(), pause, speech()[::-1], pause])  # no repeat
    wav = tmp_path / "say.wav"
    soundfile.write(wav, said, SAMPLE_RATE, subtype="PCM_16")

    def one_session():
        sent.clear()
        thread = ServerThread(LiveServer(Engine(model, max_sessions=1), {"marked": avatar}))
        try:
            page = open_page(browser, thread.url)
            page.click("#unmute")
            page.wait_for_timeout(2000)

            def say() -> None:
                page.set_input_files("#file", str(wav))
                page.wait_for_function(
                    "window.casync.events.some(e => e.type === 'speech_ended')", timeout=20_000
                )
                page.wait_for_timeout(600)

            record = record_playout(page, say)
            held = page.evaluate("window.casync.videoHeldMs")
            page.close(run_before_unload=True)
        finally:
            thread.stop()
        measure = measure_playout(record, sent)
        assert measure.placed > 0.9 * measure.frames, measure.summary()
        assert len(measure.offsets_ms) >= 40, measure.summary()
        load = os.getloadavg()[0]
        return measure, f"{measure.summary()}; video held {held} ms; load {load:.1f}"

    results = []
    for _ in range(2):
        measure, summary = one_session()
        print(summary)
        results.append(summary)
        if abs(np.median(measure.offsets_ms)) <= 40:
            break
    assert abs(np.median(measure.offsets_ms)) <= 40, "\n".join(results)


def test_a_killed_browser_frees_its_session_in_seconds(live, browser, tmp_path):
    """SIGKILL the browser process (no pagehide, no beacon, no DTLS close): its session ends
    once its control socket has been closed for the server's grace (3 s by default), not after
    the ~30 s of ICE consent checks that a peer connection needs to fail."""
    import signal
    import socket
    import subprocess
    import time

    thread = live[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chromium = subprocess.Popen(
        [
            str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}",
            "--autoplay-policy=no-user-gesture-required", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:  # the module's Playwright (one per thread) drives it over DevTools
        for _ in range(100):  # until its DevTools endpoint answers
            try:
                killable = browser.browser_type.connect_over_cdp(f"http://127.0.0.1:{port}")
                break
            except Exception:
                time.sleep(0.1)
        page = open_page(killable, thread.url)
        session = page.evaluate("window.casync.session")
        assert session in thread.server.engine.sessions
        chromium.send_signal(signal.SIGKILL)
        chromium.wait(10)
        killed = time.monotonic()
        while session in thread.server.engine.sessions and time.monotonic() < killed + 20:
            time.sleep(0.05)
        freed_s = time.monotonic() - killed
    finally:
        chromium.kill()
    print(f"killed browser's session freed after {freed_s:.1f} s")
    assert session not in thread.server.engine.sessions
    assert freed_s < thread.server.socket_grace_s + 2.0
