"""CASync Live against the issue's targets, on this machine: page open -> first frame, speech in
-> mouth out (log-mel and Whisper tiny front ends), interrupt -> idle, talking sessions at 25 fps
without dropped frames (1..N), and memory over connect/disconnect cycles.

    python -m benchmarks.live_bench [--checkpoint CKPT --video VIDEO] [--max-sessions 7] [--cycles 200]

By default the model and avatar are the built-in ones (`make live`: the tiny model trained on the
GRID sample, assets/live/); the Whisper row uses a tiny random CASync of the same size (the
front end is what it measures). Each model is warmed up as the server warms it (int8 calibrates
on that batch). The sessions curve runs at int8 (the server's default) and fp32 (the baseline),
in the same run, and at int8 once more for the same network with BatchNorm in place of
GroupNorm (`model.norm=batch`, folded at inference: random weights, the speed is the question).
Speech is pushed as a TTS or a microphone would: 20 ms chunks in real time.
Writes benchmarks/results/live.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from casync.contract import GeneratorContract, read_checkpoint, save_generator_checkpoint
from casync.live.avatar import LiveAvatar
from casync.live.client import LiveClient
from casync.live.engine import Engine, LiveModel
from casync.live.metrics import rss_bytes
from casync.live.server import LiveServer
from casync.model import CASyncNet
from tests.live_support import TINY, ServerThread, speech

RESULTS = Path(__file__).parent / "results" / "live.md"
BUILTIN = Path(__file__).resolve().parents[1] / "assets" / "live"
WARM_UP = Path(__file__).resolve().parents[1] / "assets" / "grid_s1_sample.mp4"
WHISPER = {"_target_": "casync.audio.WhisperFrontEnd", "feature_dim": 384, "window": 10}


def whisper_checkpoint(path: Path) -> Path:
    model = {**TINY, "audio_feature_dim": 384}
    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**model), model, WHISPER)
    return path


def batchnorm_twin(checkpoint: Path, path: Path) -> Path:
    """The checkpoint's network with `norm="batch"` (random weights) and its contract: the
    folded-norm network's speed on the same avatar."""
    stored = read_checkpoint(checkpoint)
    hyper = stored["hyper_parameters"]
    model = {k: v for k, v in hyper["model"].items() if k != "_target_"} | {"norm": "batch"}
    torch.manual_seed(0)
    net = CASyncNet(**model)
    contract = GeneratorContract.from_extras(stored.get("casync", {}), net.image_size)
    save_generator_checkpoint(path, net, model, hyper["audio"], contract)
    return path


def feed_real_time(sessions, audio: np.ndarray, stop: threading.Event) -> None:
    """Push `audio` to every session in 20 ms chunks at real time, looping, until `stop`."""
    chunk, start, k = 320, time.monotonic(), 0
    while not stop.is_set():
        piece = audio[(k * chunk) % len(audio) :][:chunk]
        for session in sessions:
            session.push_audio(piece)
        k += 1
        time.sleep(max(0.0, start + k * 0.02 - time.monotonic()))


def run_engine(engine: Engine, seconds: float, feeder=None) -> None:
    async def main():
        stop = asyncio.Event()
        clock = asyncio.ensure_future(engine.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await clock

    halt = threading.Event()
    thread = threading.Thread(target=feeder, args=(halt,), daemon=True) if feeder else None
    if thread:
        thread.start()
    asyncio.run(main())
    halt.set()
    if thread:
        thread.join()


def latency(model: LiveModel, avatar: LiveAvatar, seconds: float) -> dict:
    """Speech in -> its mouth generated, p50/p95 (ms), one session, real-time 20 ms chunks."""
    engine = Engine(model)
    session = engine.open(avatar, lambda f: None, lambda e: None)
    talk = np.concatenate([speech(), np.zeros(8000, np.float32)])
    run_engine(engine, seconds, lambda stop: feed_real_time([session], talk, stop))
    return engine.metrics.percentiles()


def sessions_curve(model: LiveModel, avatar: LiveAvatar, max_sessions: int, seconds: float):
    """Per N: ticks that ran late (dropped frames) and tick time p95, all N talking."""
    rows = []
    for n in range(1, max_sessions + 1):
        engine = Engine(model, max_sessions=n)
        sessions = [engine.open(avatar, lambda f: None, lambda e: None) for _ in range(n)]
        run_engine(engine, seconds, lambda stop, s=sessions: feed_real_time(s, speech(), stop))
        ticks = engine.metrics.ticks
        tick_ms = np.percentile(list(engine.metrics._tick_s), 95) * 1000
        talking = engine.metrics.talking_frames / max(engine.metrics.frames, 1)
        rows.append((n, ticks, engine.metrics.dropped_frames, tick_ms, talking))
        print(f"  {n} sessions: {engine.metrics.dropped_frames} dropped, tick p95 {tick_ms:.1f} ms")
    return rows


async def client_figures(url: str, server: LiveServer, cycles: int) -> dict:
    firsts = []
    for _ in range(5):
        opened = time.monotonic()
        async with LiveClient(url, keep_images=False) as client:
            await client.wait_frames(1)
            firsts.append(time.monotonic() - opened)
    # Interrupt: clear_buffer -> the engine's first idle frame, and -> the event back here.
    interrupts = []
    async with LiveClient(url, keep_images=False) as client:
        for _ in range(5):
            mark = len(client.events)
            await client.push_audio((speech() * 32767).astype(np.int16))
            await client.wait_for("speech_started", after=mark)
            await asyncio.sleep(0.4)
            sent = time.monotonic()
            await client.clear_buffer()
            event = await client.wait_for("interrupted", after=mark)
            interrupts.append((event["latency_ms"], (event["arrived"] - sent) * 1000))
            await asyncio.sleep(0.3)
    # Connect / disconnect cycles: memory of the process (server and client together).
    before = rss_bytes()
    for k in range(cycles):
        async with LiveClient(url, keep_images=False) as client:
            await client.wait_frames(2)
        if k == 9:
            before = rss_bytes()  # after warm-up (first allocations of codecs, pools)
    await asyncio.sleep(1.0)
    after = rss_bytes()
    return {
        "first_frame_s": firsts,
        "interrupts": interrupts,
        "rss_before": before,
        "rss_after": after,
        "sessions_left": len(server.engine.sessions),
    }


def browser_first_frames(url: str, runs: int = 5) -> list[float]:
    """Page open (navigation start) -> first avatar frame presented, in Debian's Chromium
    (seconds; empty without /usr/bin/chromium)."""
    if not Path("/usr/bin/chromium").is_file():
        return []
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        for _ in range(runs):
            page = browser.new_page()
            page.goto(url)
            times.append(page.evaluate("window.casync.firstFrame") / 1000)
            page.close(run_before_unload=True)
        browser.close()
    return times


def prepared(checkpoint: Path, video: Path, precision: str, work: Path):
    """(model, avatar) as the server prepares them: loaded, tracked, warmed up."""
    from casync.audio.frontend import SAMPLE_RATE
    from casync.media.audio import load_audio

    model = LiveModel.from_checkpoint(checkpoint, precision=precision, cache_dir=str(work))
    avatar = LiveAvatar.from_video("bench", model.generator, video)
    model.warm_up(avatar, load_audio(WARM_UP, SAMPLE_RATE, False)[: 30 * SAMPLE_RATE], 16)
    return model, avatar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=BUILTIN / "grid_s1_mel.ckpt")
    parser.add_argument("--video", type=Path, default=BUILTIN / "grid_s1_idle.mp4")
    parser.add_argument("--max-sessions", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="live_bench_"))
    model, avatar = prepared(args.checkpoint, args.video, "int8", work)
    baseline, baseline_avatar = prepared(args.checkpoint, args.video, "fp32", work)

    print("latency (mel)")
    mel = latency(model, avatar, args.seconds)
    print("latency (whisper tiny)")
    whisper_model, whisper_avatar = prepared(
        whisper_checkpoint(work / "w.ckpt"), args.video, "int8", work
    )
    whisper = latency(whisper_model, whisper_avatar, args.seconds)
    print("sessions, int8")
    curve = sessions_curve(model, avatar, args.max_sessions, args.seconds)
    print("sessions, fp32")
    curve_fp32 = sessions_curve(baseline, baseline_avatar, args.max_sessions, args.seconds)
    print("sessions, int8, BatchNorm folded")
    folded, folded_avatar = prepared(
        batchnorm_twin(args.checkpoint, work / "bn.ckpt"), args.video, "int8", work
    )
    curve_bn = sessions_curve(folded, folded_avatar, args.max_sessions, args.seconds)
    print("client figures")
    server = LiveServer(Engine(model, max_sessions=4), {"bench": avatar})
    thread = ServerThread(server)
    try:
        figures = asyncio.run(client_figures(thread.url, server, args.cycles))
        figures["page_first_frame_s"] = browser_first_frames(thread.url)
    finally:
        thread.stop()
    write(args, mel, whisper, (curve, curve_fp32, curve_bn), figures, model)


def write(args, mel, whisper, curves, figures, model: LiveModel) -> None:
    curve, curve_fp32, curve_bn = curves
    load = os.getloadavg()
    firsts = figures["first_frame_s"]
    engine_ms = [a for a, _ in figures["interrupts"]]
    client_ms = [b for _, b in figures["interrupts"]]
    delta_mb = (figures["rss_after"] - figures["rss_before"]) / 2**20
    lines = [
        "# CASync Live: measured",
        "",
        f"`python -m benchmarks.live_bench` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}); model: {args.checkpoint.name} at "
        f"{type(model.crops.net).__name__} (int8 asked), 1 torch thread; avatar: "
        f"{args.video.name}.",
        "",
        "| | target | measured |",
        "|---|---|---|",
        page_row(figures["page_first_frame_s"]),
        f"| connect -> first frame (Python WebRTC client, 5 runs) | | median {np.median(firsts):.2f} s, max {max(firsts):.2f} s |",
        f"| speech in -> mouth generated, log-mel (one session, real-time 20 ms chunks) | p95 <= 250 ms | p50 {mel.get(50, float('nan')):.0f} ms, p95 {mel.get(95, float('nan')):.0f} ms |",
        f"| speech in -> mouth generated, Whisper tiny | p95 <= 500 ms | p50 {whisper.get(50, float('nan')):.0f} ms, p95 {whisper.get(95, float('nan')):.0f} ms |",
        f"| clear_buffer -> first idle frame (engine; 5 runs) | <= 300 ms | median {np.median(engine_ms):.0f} ms, max {max(engine_ms):.0f} ms |",
        f"| clear_buffer sent -> 'interrupted' event back at the client | | median {np.median(client_ms):.0f} ms, max {max(client_ms):.0f} ms |",
        f"| {args.cycles} connect/disconnect cycles (after 10 warm-up) | RSS within 50 MB | {delta_mb:+.1f} MB; sessions left: {figures['sessions_left']} |",
        "",
        f"Talking sessions on one engine ({args.seconds:g} s each, every session talking all the time, "
        "engine only: the WebRTC encoding of each session's video is not in these figures):",
        "",
        "| sessions | int8: dropped frames | int8: tick p95 (ms, budget 40) | fp32: dropped frames | fp32: tick p95 (ms) | int8 BatchNorm folded: dropped | its tick p95 (ms) | ticks | talking share |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {n} | {d} | {ms:.1f} | {d32} | {ms32:.1f} | {dbn} | {msbn:.1f} | {t} | {share:.2f} |"
            for (n, t, d, ms, share), (_, _, d32, ms32, _), (_, _, dbn, msbn, _) in zip(
                curve, curve_fp32, curve_bn, strict=True
            )
        ],
        "",
        "The audio-video offset in the browser (at start and after 30 min): "
        "`benchmarks/results/live_sync.md`. Not measured here: sessions with their video encoded "
        "(VP8) and sent.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def page_row(times: list[float]) -> str:
    what = "| page open -> first frame on screen (Chromium, 5 runs) | <= 1 s |"
    if not times:
        return f"{what} not measured (no /usr/bin/chromium) |"
    return f"{what} median {np.median(times):.2f} s, max {max(times):.2f} s |"


if __name__ == "__main__":
    main()
