"""The stream's speed: audio fed in 40 ms chunks at the pace it is spoken, frames/s and latency
from the end of each frame's own audio (its 40 ms) to the frame leaving `Synthesizer.render`.

The latency includes the front end's look-ahead (mel: ~115 ms past the frame's centre; Whisper:
its chunk and look-ahead), the batch a frame waits for, and the compute. Part of
`benchmarks.inference_bench`; random weights (only cost matters).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from casync.audio.frontend import SAMPLE_RATE
from casync.inference.precision import PRECISIONS, resolve_precision
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
WHISPER = {"_target_": "casync.audio.WhisperFrontEnd", "feature_dim": 384, "window": 10}
CHUNK_S = 0.04
AUDIO_S = 8.0
REAL_TIME_DRIFT = 0.01  # s of latency gained per s of audio: 1 % behind


def paced(waveform: np.ndarray, start: float, rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """`waveform` in CHUNK_S chunks, each handed on when its last sample has been spoken."""
    step = int(CHUNK_S * rate)
    for k, first in enumerate(range(0, len(waveform), step)):
        wait = start + (k + 1) * CHUNK_S - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield waveform[first : first + step]


def measure(synth, waveform: np.ndarray) -> dict:
    """Latency per frame, the steady output rate (frames after the first over the time from the
    first frame to the last: the wall time would count the first frame's latency as slowness,
    so a stream that keeps up could never show 25) and the latency's drift: the slope of a
    line fit to latency against the frame's time, in ms per second of audio. A stream holds
    real time when its drift is ~0; one that falls behind drifts by 1000 * (1 - rate / fps)."""
    latencies, emitted, start = [], [], time.perf_counter()
    for rendered in synth.render(paced(waveform, start)):
        spoken = start + (rendered.index + 1) / synth.fps  # the frame's own audio has arrived
        emitted.append(time.perf_counter())
        latencies.append(emitted[-1] - spoken)
    times = np.arange(1, len(latencies) + 1) / synth.fps
    drift = float(np.polyfit(times, latencies, 1)[0])
    return {
        "frames": len(latencies),
        "fps": (len(emitted) - 1) / (emitted[-1] - emitted[0]),
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "max_ms": 1000 * max(latencies),
        "drift_ms_per_s": 1000 * drift,
        "real_time": drift < REAL_TIME_DRIFT,
    }


def stream_once(
    model: dict, audio: dict, precision: str, batch: int, device: str, cache: Path,
    video: Path, warm_s: float, face_cache_mb: float, samples: Path,
) -> dict:  # fmt: skip
    """One stream over `video`; the warm-up (`warm_s` of audio: int8 quantizes on its first
    batch; an avatar's face features fill the cache over one ping-pong period) is not timed."""
    from casync.contract import save_generator_checkpoint
    from casync.inference import Synthesizer
    from casync.media.audio import load_audio

    work = Path(tempfile.mkdtemp(prefix="casync-stream-"))
    torch.manual_seed(0)
    model = model | {"audio_feature_dim": audio["feature_dim"]}
    save_generator_checkpoint(work / "model.ckpt", CASyncNet(**model), model, audio)
    synth = Synthesizer.from_checkpoint(
        work / "model.ckpt", device=device, track_cache_dir=cache, progress=False,
        precision=precision, batch_size=batch, face_cache_mb=face_cache_mb,
    )  # fmt: skip
    synth.prepare(video)
    waveform = load_audio(samples / "audio" / "jfk_11s.flac", SAMPLE_RATE)
    measure(synth, waveform[: int(warm_s * SAMPLE_RATE)])
    return measure(synth, waveform[: int(AUDIO_S * SAMPLE_RATE)])


def stream_rows(
    device: str, cache: Path, samples: Path, models: dict[str, dict], avatar: Path
) -> list[str]:
    """Markdown lines: one row per (model, front end, precision, batch, source). The source is
    aoc_8s.mp4 (8 s: the 8 s stream never loops, no face cache), or `avatar`, a 2 s clip that
    loops, with the face-feature cache warm (an avatar served again and again)."""
    fastest = [p for p in PRECISIONS if resolve_precision(p, device) == p][-1]
    video = samples / "video" / "aoc_8s.mp4"
    configs = [
        ("tiny", "mel", "fp32", 1, video),
        ("tiny", "mel", fastest, 1, video),
        ("tiny", "whisper_tiny", "fp32", 1, video),
        ("tiny", "whisper_tiny", fastest, 1, video),
        ("paper size", "mel", fastest, 1, video),
        ("paper size", "mel", fastest, 4, video),
        ("paper size", "mel", fastest, 1, avatar),
        ("paper size", "mel", fastest, 4, avatar),
    ]
    lines = [
        f"## Stream (`Synthesizer.render`, {AUDIO_S:g} s of jfk_11s.flac in {CHUNK_S * 1000:g} ms "
        "chunks at real-time pace; face track cached)",
        "",
        "Latency: from the end of a frame's own 40 ms of audio to the frame. Frames/s: the "
        "steady output rate, first frame to last. Drift: the slope of the latency over the "
        f"stream (ms per s of audio); real time = drift under {REAL_TIME_DRIFT * 1000:g} ms/s "
        "(a stream 4 % short of 25 frames/s drifts 40 ms/s). Source: aoc_8s.mp4 (no loop, no "
        "face cache) or a 2 s avatar clip that loops, its face-feature cache warm.",
        "",
        "| model | front end | precision | batch | source | frames/s | latency p50 (ms) | p95 "
        "| max | drift (ms/s) | real time |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, front, precision, batch, source in configs:
        audio = WHISPER if front.startswith("whisper") else MEL
        looping = source == avatar
        r = stream_once(
            models[name], audio, precision, batch, device, cache, source,
            warm_s=4.0 if looping else 1.0, face_cache_mb=1024 if looping else 0, samples=samples,
        )  # fmt: skip
        where = "2 s avatar (loops)" if looping else "aoc_8s"
        lines.append(
            f"| {name} | {front} | {precision} | {batch} | {where} | {r['fps']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} | "
            f"{r['drift_ms_per_s']:+.0f} | {'yes' if r['real_time'] else 'no'} |"
        )
    return lines
