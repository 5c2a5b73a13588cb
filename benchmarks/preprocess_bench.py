"""Preprocessing and loader throughput (a benchmark, not a test).

    .venv/bin/python benchmarks/preprocess_bench.py [--long-minutes 10] [--skip-long]

1. decode + landmarks + crop frames/s on aoc_8s.mp4 (512x512), with the stage breakdown;
2. audio features (mel, and HuBERT-large-sized random weights) seconds per minute of audio;
3. peak RSS for the whole pipeline (decode + landmarks + crop + write) on a long 1080p input made
   by looping aoc_8s.mp4 upscaled to 1920x1080 (H.264), in a child process;
4. CASyncDataModule samples/s with 2 workers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from omegaconf import OmegaConf

from casync.audio.frontend import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "video" / "aoc_8s.mp4"
PREPROCESS = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "preprocess.yaml").preprocess)
FPS, CROP = PREPROCESS["fps"], PREPROCESS["crop_size"]  # the preprocessing defaults


def bench_frames(path: Path) -> dict[str, float]:
    """Decode alone, mesh alone, and the preprocessing pass: decode (background thread) + face
    mesh + fixed-lag smoothing + crop, in one pass over the video."""
    from casync.data.extract import track_and_cut_crops
    from casync.data.pipeline import PipelineSettings
    from casync.face import FaceTracker
    from casync.media.video import iter_frames

    start = time.perf_counter()
    n = sum(1 for _ in iter_frames(path, FPS))
    decode = n / (time.perf_counter() - start)
    frames = list(iter_frames(path, FPS))
    with FaceTracker() as tracker:
        start = time.perf_counter()
        for frame in frames:
            tracker(frame)
        mesh = n / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        track = track_and_cut_crops(path, Path(tmp), PipelineSettings(**PREPROCESS))
        seconds = time.perf_counter() - start
        assert len(track) == n and (Path(tmp) / "crops.npy").stat().st_size > n * CROP * CROP * 3
    return {
        "decode_fps": decode,
        "mesh_fps": mesh,
        "pipeline_fps": n / seconds,
    }


def bench_audio() -> dict[str, float]:
    import torch
    from transformers import HubertConfig, HubertModel

    from casync.audio import HubertFrontEnd, MelFrontEnd
    from casync.media.audio import load_audio

    audio = np.tile(load_audio(SAMPLE, SAMPLE_RATE), 8)  # 64 s
    minutes = len(audio) / SAMPLE_RATE / 60
    start = time.perf_counter()
    MelFrontEnd()(audio)
    mel = (time.perf_counter() - start) / minutes
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        HubertModel(HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                 intermediate_size=4096)).save_pretrained(tmp)  # fmt: skip
        front_end = HubertFrontEnd(tmp, feature_dim=1024)
        start = time.perf_counter()
        front_end(audio)
        hubert = (time.perf_counter() - start) / minutes
    return {"mel_s_per_min": mel, "hubert_large_s_per_min": hubert}


def make_long(out: Path, minutes: float, hd: bool) -> Path:
    """Loop aoc_8s.mp4 for `minutes` (H.264 + AAC): 512x512 as is, or upscaled into 1920x1080."""
    from casync.media.audio import load_audio
    from casync.media.video import iter_frames

    side = 1080 if hd else 512
    frames = [cv2.resize(f, (side, side)) for f in iter_frames(SAMPLE, FPS)]
    audio = (np.clip(load_audio(SAMPLE, SAMPLE_RATE), -1, 1) * 32767).astype(np.int16)
    loops = int(np.ceil(minutes * 60 / 8))
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(FPS), options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = (1920 if hd else 512), side, "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        canvas = np.zeros((side, video.width, 3), np.uint8)
        for _ in range(loops):
            for frame in frames:
                canvas[:, (video.width - side) // 2 :][:, :side] = frame
                container.mux(video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(video.encode())
        for i in range(loops):
            for s in range(0, len(audio), 1024):
                chunk = av.AudioFrame.from_ndarray(audio[None, s : s + 1024], "s16", "mono")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, i * len(audio) + s
                container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return out


def run_long(path: Path, cache: Path) -> None:
    """Child process: the real preprocessing (mel) on `path`; prints frames/s and peak RSS."""
    from casync.audio import MelFrontEnd
    from casync.data.pipeline import PipelineSettings, build_cache

    start = time.perf_counter()
    build_cache(cache, "long", [path], MelFrontEnd(), PipelineSettings(**PREPROCESS))
    seconds = time.perf_counter() - start
    from casync.data.cache import open_cache

    n = open_cache(cache, "long").n_frames
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_mb = int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024
    print(f"LONG frames={n} seconds={seconds:.1f} fps={n / seconds:.1f} peak_rss_mb={peak_mb:.0f}")


def bench_loader(cache: Path) -> float:
    from casync.data import CASyncDataModule

    dm = CASyncDataModule(str(cache), ["long"], batch_size=16, num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = iter(loader)
    next(batches)  # worker start-up
    start = time.perf_counter()
    n = 0
    for i, batch in enumerate(batches):
        n += len(batch["frame"])
        if i == 60:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--minutes-512", type=float, default=1.0)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        run_long(Path(args.child[0]), Path(args.child[1]))
        return
    print("frames (aoc_8s.mp4, 512x512):", bench_frames(SAMPLE))
    print("audio features:", bench_audio())
    with tempfile.TemporaryDirectory() as tmp:
        for name, minutes, hd in [
            ("512", args.minutes_512, False),
            ("1080p", args.long_minutes, True),
        ]:
            if hd and args.skip_long:
                break
            long = make_long(Path(tmp) / f"{name}.mp4", minutes, hd)
            cache = Path(tmp) / f"cache{name}"
            print(f"{name}, {minutes} min, whole pipeline (mel) in a fresh process:", flush=True)
            subprocess.run([sys.executable, __file__, "--child", str(long), str(cache)], check=True)
        print(f"loader: {bench_loader(cache):.0f} samples/s (batch 16, 2 workers)")


if __name__ == "__main__":
    main()
