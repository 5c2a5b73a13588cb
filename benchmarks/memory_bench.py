"""Peak memory and temporary disk of `python -m casync.infer` on large sources: a short output
from a long 1080p / 4K source (the frames the output needs, not the source's length, must set
the cost) and a looping output (audio longer than the video).

    python -m benchmarks.memory_bench [--seconds 12] [--output-seconds 5]

Sources are made from ../shared/data/video/macron_50s.mp4 (CASYNC_SAMPLE_DIR), upscaled onto a
1920x1080 / 3840x2160 canvas. Temporary
disk is the size of the files it holds open in its temp folder (TMPDIR, a private folder),
sampled every 50 ms. Peak RSS is the kernel's (wait4's ru_maxrss). Writes
benchmarks/results/memory.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(
    os.environ.get("CASYNC_SAMPLE_DIR", Path(__file__).parents[1] / ".." / "shared" / "data")
)
RESULTS = Path(__file__).parent / "results" / "memory.md"


def make_source(path: Path, width: int, height: int, seconds: float) -> Path:
    """macron_50s upscaled to a height x height square centred on a width x height canvas;
    longer than its 50 s, played forward then backward (sound too) until `seconds`."""
    import av
    import cv2

    from casync.media.audio import load_audio
    from casync.media.video import iter_frames

    source = SAMPLE_DIR / "video" / "macron_50s.mp4"
    clip = list(iter_frames(source, 25.0))
    clip_sound = load_audio(source, 16_000)[: len(clip) * 640]
    n = int(seconds * 25)
    order = [i % (2 * len(clip)) for i in range(n)]
    order = [i if i < len(clip) else 2 * len(clip) - 1 - i for i in order]
    laps = -(-n // len(clip))
    audio = np.concatenate([clip_sound if k % 2 == 0 else clip_sound[::-1] for k in range(laps)])
    audio = audio[: int(seconds * 16_000)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "20"}
        sound = container.add_stream("aac", rate=16_000)
        sound.layout = "mono"
        for index in order:
            frame = clip[index]
            canvas = np.zeros((height, width, 3), np.uint8)
            left = (width - height) // 2
            canvas[:, left : left + height] = cv2.resize(frame, (height, height), cv2.INTER_CUBIC)
            container.mux(video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(video.encode())
        pcm = (audio * 32767).astype(np.int16)
        for start in range(0, len(pcm), 1024):
            chunk = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], "s16", "mono")
            chunk.sample_rate, chunk.pts = 16_000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


def seconds_of(video: Path) -> float:
    from casync.media.video import probe_video

    return round(probe_video(video).duration_s, 1)


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its children (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return total


def folder_bytes(folder: Path) -> int:
    """Bytes held by files in `folder`, open-but-deleted ones included (statvfs of a private
    tmpfs is not available, so count what /proc says the process tree holds open there)."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(proc)
            if target.startswith(str(folder)):
                total += os.stat(proc).st_size
        except OSError:
            continue
    return total


def measure(command: list[str], tmp: Path) -> tuple[float, float, float]:
    """(peak RSS GB, peak temp disk GB, seconds) of `command` with TMPDIR=`tmp`."""
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (read on failure, closed by the GC)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    peaks = {"rss": 0, "disk": 0}

    def sample() -> None:
        while process.poll() is None:
            peaks["rss"] = max(peaks["rss"], tree_rss(process.pid))
            peaks["disk"] = max(peaks["disk"], folder_bytes(tmp))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)  # the kernel's own peak RSS of the process
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if process.returncode != 0:
        log.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read().decode()[-2000:]}")
    rss = max(usage.ru_maxrss * 1024, peaks["rss"])
    return rss / 1e9, peaks["disk"] / 1e9, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--output-seconds", type=float, default=5.0)
    args = parser.parse_args()
    import torch

    from casync.contract import save_generator_checkpoint
    from casync.media.audio import load_audio
    from casync.model import CASyncNet

    work = Path(tempfile.mkdtemp(prefix="casync-memory-bench-"))
    try:
        model = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
        torch.manual_seed(0)
        checkpoint = work / "tiny.ckpt"
        mel = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
        save_generator_checkpoint(checkpoint, CASyncNet(**model), model, mel)
        speech = load_audio(SAMPLE_DIR / "audio" / "jfk_11s.flac", 16_000)
        import soundfile

        short, long = work / "short.wav", work / "long.wav"
        soundfile.write(short, speech[: int(args.output_seconds * 16_000)], 16_000)
        soundfile.write(long, np.tile(speech, 3)[: int((args.seconds * 1.5) * 16_000)], 16_000)
        rows = []
        sources = {  # name: (width, height, seconds, outputs)
            "1080p": (
                1920,
                1080,
                args.seconds,
                (("short output", short), ("looping output", long)),
            ),
            "1080p, 4x longer": (1920, 1080, 4 * args.seconds, (("short output", short),)),
            "4K": (3840, 2160, args.seconds, (("short output", short), ("looping output", long))),
        }
        for name, (width, height, seconds, outputs) in sources.items():
            source = make_source(work / f"source{width}_{seconds:g}.mp4", width, height, seconds)
            cache = work / "cache"
            runs = [(label, audio, "null") for label, audio in outputs]
            runs.append(("short output, its avatar made (infer's default)", short, str(cache)))
            for label, audio, cache_dir in runs:
                tmp = work / "tmp"
                tmp.mkdir(exist_ok=True)
                command = [
                    sys.executable, "-m", "casync.infer", f"checkpoint={checkpoint}",
                    f"video={source}", f"driving_audio={audio}", f"output={work / 'out.mp4'}",
                    f"track_cache_dir={cache_dir}",
                    f"paths.log_dir={work / 'logs'}", "progress=false", "face_cache_mb=0",
                ]  # fmt: skip
                rss, disk, wall = measure(command, tmp)
                if cache_dir != "null":  # the avatar folder is kept, not temporary: say its size
                    kept = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e9
                    label = f"{label}: avatar folder {kept:.2f} GB"
                    shutil.rmtree(cache)
                out_s = float(soundfile.info(audio).duration)
                rows.append((name, label, seconds_of(source), out_s, rss, disk, wall))
                print(rows[-1], flush=True)
                shutil.rmtree(tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Peak memory and temporary disk of casync.infer on large sources",
        "",
        f"`python -m benchmarks.memory_bench` (tiny model, mel front end; {os.cpu_count()} cores).",
        "",
        "| source | output | source s | output s | peak RSS (GB) | peak temp disk (GB) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r[0]} | {r[1]} | {r[2]:g} | {r[3]:.1f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.0f} |"
            for r in rows
        ),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
