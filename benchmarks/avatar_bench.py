"""What an avatar saves and costs: start-up (from a call to the first generated frame) driving a
60 s 512x512 source from the video (today's path: hash, decode, track) and from its prepared
avatar, in the same process; and preparing a long 1080p source (peak memory, folder size, time).

    python -m benchmarks.avatar_bench [--long-seconds 120]

Sources come from ../shared/data (CASYNC_SAMPLE_DIR): macron_50s.mp4 looped to 60 s (512x512),
and macron upscaled onto 1920x1080 for the long source. The model is the tiny one with the mel
front end (start-up does not depend on the model's size beyond its first batch). Writes
benchmarks/results/avatar.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.memory_bench import SAMPLE_DIR, make_source

RESULTS = Path(__file__).parent / "results" / "avatar.md"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}


def looped_source(path: Path, seconds: float) -> Path:
    """macron_50s.mp4 (512x512) played forward then backward to `seconds`, with its sound."""
    import av

    from casync.media.audio import load_audio
    from casync.media.video import iter_frames

    source = SAMPLE_DIR / "video" / "macron_50s.mp4"
    frames = list(iter_frames(source, 25.0))
    audio = load_audio(source, 16_000)
    n = int(seconds * 25)
    order = [i % (2 * len(frames)) for i in range(n)]
    order = [i if i < len(frames) else 2 * len(frames) - 1 - i for i in order]
    sound = np.concatenate([audio, audio[::-1]] * 2)[: int(seconds * 16_000)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 512, 512, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18"}
        stream = container.add_stream("aac", rate=16_000)
        stream.layout = "mono"
        for index in order:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frames[index], format="rgb24")))
        container.mux(video.encode())
        pcm = (np.clip(sound, -1, 1) * 32767).astype(np.int16)
        for start in range(0, len(pcm), 1024):
            chunk = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], "s16", "mono")
            chunk.sample_rate, chunk.pts = 16_000, start
            container.mux(stream.encode(chunk))
        container.mux(stream.encode())
    return path


def first_frame_seconds(synthesizer, source_of, speech: np.ndarray) -> float:
    """Seconds from calling `source_of()` to the first generated frame of `speech`."""
    from casync.inference.mp4 import SequentialFrames

    started = time.perf_counter()
    source = source_of()
    frames = SequentialFrames(source.iter_frames(75))  # as synthesis reads a source in order
    next(iter(synthesizer.render([speech], source, frames.get, loops=False)))
    elapsed = time.perf_counter() - started
    frames.close()
    source.close()
    return elapsed


def prepare_cost(video: Path, checkpoint: Path, folder: Path) -> tuple[float, float, float]:
    """(peak RSS GB, folder GB, seconds) of `python -m casync.avatar` in its own process."""
    command = [
        sys.executable, "-m", "casync.avatar", f"checkpoint={checkpoint}", f"video={video}",
        f"output={folder}", f"paths.log_dir={folder.parent / 'logs'}",
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, high_water_mark(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    size = sum(p.stat().st_size for p in folder.iterdir())
    return peak / 1e9, size / 1e9, time.perf_counter() - started


def high_water_mark(pid: int) -> int:
    """The process's peak RSS in bytes (VmHWM) since its exec. Not the child's ru_maxrss: Linux
    carries the spawning process's peak over exec (subprocess starts children by vfork), so
    that read this bench's own 2.1 GB, not the 1.3 GB `python -m casync.avatar` peaks at."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tiny_checkpoint(path: Path) -> Path:
    """The tiny model with the mel front end, random weights (speed does not depend on them)."""
    import torch

    from casync.contract import save_generator_checkpoint
    from casync.model import CASyncNet

    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from casync.avatar import load_avatar, prepare_avatar
    from casync.contract import load_generator
    from casync.inference import Synthesizer
    from casync.inference.source import prepare_source
    from casync.media.audio import load_audio

    work = Path(tempfile.mkdtemp(prefix="casync-avatar-bench-"))
    checkpoint = tiny_checkpoint(work / "tiny.ckpt")
    generator = load_generator(checkpoint)
    speech = load_audio(SAMPLE_DIR / "audio" / "jfk_11s.flac", 16_000)[8000 : 8000 + 3 * 16_000]
    video = looped_source(work / "source60.mp4", 60.0)
    started = time.perf_counter()
    prepare_avatar(video, generator, work / "avatars" / "source60").close()
    prepare_s = time.perf_counter() - started
    synthesizer = Synthesizer.from_checkpoint(checkpoint, progress=False, batch_size=1)
    g = generator

    def from_video(tracks: Path | None):
        return lambda: prepare_source(video, g.fps, g.crop_size, g.smoothing, 75, tracks)

    def from_avatar():
        return load_avatar(work / "avatars" / "source60", g)

    rows = {
        "video= (first run: hash, decode, track)": [
            first_frame_seconds(synthesizer, from_video(work / "tracks"), speech)
        ],
        "video= (its face track cached by an earlier run)": [],
        "avatar= (prepared by an earlier run)": [],
    }
    for _ in range(args.rounds):  # interleaved, median reported
        rows["video= (its face track cached by an earlier run)"].append(
            first_frame_seconds(synthesizer, from_video(work / "tracks"), speech)
        )
        rows["avatar= (prepared by an earlier run)"].append(
            first_frame_seconds(synthesizer, from_avatar, speech)
        )
    long_video = make_source(work / "long1080.mp4", 1920, 1080, args.long_seconds)
    rss, size, seconds = prepare_cost(long_video, checkpoint, work / "avatars" / "long1080")
    scale = 600 / args.long_seconds
    lines = [
        "# Avatars: start-up and preparation",
        "",
        f"`python -m benchmarks.avatar_bench` ({os.cpu_count()} cores; tiny model, mel front end,",
        "batch 1; median of interleaved rounds).",
        "",
        "## Start-up: a call to the first generated frame, 60 s 512x512 source (1500 frames)",
        "",
        "| source given as | seconds to the first frame |",
        "|---|---:|",
        *(f"| {k} | {float(np.median(v)):.3f} |" for k, v in rows.items()),
        "",
        f"Preparing that avatar once took {prepare_s:.0f} s.",
        "",
        f"## Preparing a {args.long_seconds:g} s 1080p source (`python -m casync.avatar`)",
        "",
        "| | measured | 10 minutes (memory constant, disk and time linear) |",
        "|---|---:|---:|",
        f"| peak RSS (GB) | {rss:.2f} | {rss:.2f} |",
        f"| avatar folder (GB) | {size:.2f} | {size * scale:.2f} |",
        f"| seconds | {seconds:.0f} | {seconds * scale:.0f} |",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
