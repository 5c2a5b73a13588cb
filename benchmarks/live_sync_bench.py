"""CASync Live: the audio-video offset a browser sees, at the start of a session and after it
has run for a long time (30 min by default), talking once a minute.

Debian's Chromium (Playwright) opens the page, sound on; the server's frames are tapped as they
leave; while the avatar says a clip, `tests/live_sync.py` logs the frames the page presents and
the sound it plays (the browser's own reports) and measures each talking frame's offset
(presented - played; negative = the mouth early). The model is the built-in one (`make live`), warmed up and run on one thread as the
server runs it; the avatar is 2 s of the GRID sample with each frame's index drawn on it. Writes
benchmarks/results/live_sync.md.

    python -m benchmarks.live_sync_bench [--minutes 30]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m casync.live` (before torch)

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

import casync.live.server as server_module
from casync.audio.frontend import SAMPLE_RATE
from casync.live.avatar import LiveAvatar
from casync.live.engine import Engine, LiveModel
from casync.live.metrics import rss_bytes
from casync.live.server import LiveServer
from tests.clips import sample_audio, sample_frames, write_clip
from tests.live_support import SAMPLE, ServerThread, speech
from tests.live_sync import SyncMeasure, marked, measure_playout, record_playout, tapped_output

RESULTS = Path(__file__).parent / "results" / "live_sync.md"
BUILTIN = Path(__file__).resolve().parents[1] / "assets" / "live" / "grid_s1_mel.ckpt"
CHROMIUM = "/usr/bin/chromium"


def measure(page, sent: list, wav: Path) -> tuple[SyncMeasure, int]:
    """What the page plays while the avatar says `wav`; (the offsets, the video hold the page
    chose)."""
    del sent[: max(0, len(sent) - 50)]  # keep 2 s: frames in flight when recording starts

    def say() -> None:
        after = page.evaluate("window.casync.events.length")
        page.set_input_files("#file", str(wav))
        page.wait_for_function(
            f"window.casync.events.slice({after}).some(e => e.type === 'speech_ended')",
            timeout=30_000,
        )
        page.wait_for_timeout(600)

    record = record_playout(page, say)
    return measure_playout(record, list(sent)), page.evaluate("window.casync.videoHeldMs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="live_sync_bench_"))
    sent: list = []
    server_module.SessionOutput = tapped_output(sent)
    model = LiveModel.from_checkpoint(BUILTIN, precision="int8", cache_dir=str(work))
    clip = write_clip(
        work / "marked.mp4", marked(sample_frames(SAMPLE, 50)), audio=sample_audio(SAMPLE, 2.0)
    )
    avatar = LiveAvatar.from_video("marked", model.generator, clip)
    model.warm_up(avatar, np.concatenate([speech()] * 8), 16)
    engine = Engine(model, max_sessions=1)
    thread = ServerThread(LiveServer(engine, {"marked": avatar}))
    pause = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    wav = work / "say.wav"
    said = np.concatenate([pause, speech(), pause, speech()[::-1], pause])
    soundfile.write(wav, said, SAMPLE_RATE, subtype="PCM_16")
    other = work / "other.wav"
    soundfile.write(other, 0.5 * said, SAMPLE_RATE, subtype="PCM_16")  # 6 dB down: other levels
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            page = browser.new_page()
            page.goto(thread.url)
            page.wait_for_function("window.casync && window.casync.session !== null")
            page.click("#unmute")
            page.wait_for_timeout(2000)
            started = time.monotonic()
            rows.append(("2 s after the page opened", *measure(page, sent, wav), rss_bytes()))
            print(rows[-1][1].summary(), flush=True)
            end = started + args.minutes * 60
            while time.monotonic() < end:  # talk once a minute, idle in between
                page.wait_for_timeout(int(min(60.0, max(end - time.monotonic(), 0)) * 1000))
                sent.clear()
                page.set_input_files("#file", str(other))  # not the measured clip: one match
                minutes = (time.monotonic() - started) / 60
                print(f"{minutes:.1f} min, RSS {rss_bytes() / 2**20:.0f} MB", flush=True)
            late = f"after {(time.monotonic() - started) / 60:.0f} min"
            page.wait_for_timeout(8000)
            rows.append((late, *measure(page, sent, wav), rss_bytes()))
            print(rows[-1][1].summary(), flush=True)
            browser.close()
    finally:
        thread.stop()
    write(rows, engine)


def write(rows, engine: Engine) -> None:
    load = os.getloadavg()
    lines = [
        "# CASync Live: audio-video offset in the browser",
        "",
        f"`python -m benchmarks.live_sync_bench` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}); Chromium with sound on, one session talking once a minute. Offset = "
        "when the page presents a frame (requestVideoFrameCallback) - when the first sample of "
        "its sound is handed to the audio device (getSynchronizationSources) plus the device's "
        "output latency (AudioContext.outputLatency), negative: the mouth early; target within "
        "+-40 ms.",
        "",
        "| when | median | p10 | p90 | talking frames | video held by the page | server RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for when, result, held, rss in rows:
        p10, p50, p90 = np.percentile(result.offsets_ms, [10, 50, 90])
        lines.append(
            f"| {when} | {p50:+.0f} ms | {p10:+.0f} ms | {p90:+.0f} ms | "
            f"{len(result.offsets_ms)} | {held} ms | {rss / 2**20:.0f} MB |"
        )
    m = engine.metrics
    lines += [
        "",
        f"Engine over the run: {m.ticks} ticks, {m.frames} frames ({m.talking_frames} talking), "
        f"{m.dropped_frames} dropped to late ticks.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
