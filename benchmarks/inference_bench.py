"""Inference speed at every precision (fp32, bf16, int8): model-only frames/s (batch 1 and 16)
beside the Wav2Lip generator at the same precision, end-to-end frames/s of `python -m
casync.infer` (decode, features, generation, blending, encoding), and the stream's frames/s and
latency from an audio chunk to its frame (mel, and the Whisper front end).

    python -m benchmarks.inference_bench [--device cpu|cuda] [--seconds 2] [--rounds 5]

Writes benchmarks/results/inference.md (or inference_<device>.md for a GPU). Weights are random:
only cost matters. All models run in the same process, measured in interleaved rounds (the
median round is reported), so a busy machine slows every row alike and the ratios stay fair.
Precisions go through `casync.inference.precision` (bf16 weights; onnxruntime static int8), the
same code the Synthesizer runs, for CASync and Wav2Lip alike; BatchNorm is folded into the
convolution before it in every graph (`casync.model.fold`: Wav2Lip's, and CASync's with
`model.norm=batch`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as casync.infer sets it; before torch

import argparse
import hashlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.stream_bench import stream_rows
from benchmarks.wav2lip import Wav2LipGenerator
from casync.inference.onnx_export import OnnxGenerator
from casync.inference.precision import (
    PRECISIONS,
    build_generator,
    quantize_generator,
    resolve_precision,
)
from casync.model import CASyncNet
from casync.model.complexity import model_complexity

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("CASYNC_SAMPLE_DIR", ROOT.parent / "shared" / "data"))
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
FULL = {"audio_feature_dim": 1024, "audio_window": 10}  # the paper's HuBERT-large features
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}  # casync_tiny+mel
WAV2LIP = "Wav2Lip generator (96x96, mel 80x16)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def throughput(model, inputs, batch: int, seconds: float, device: torch.device) -> float:
    """Frames per second of `model(*inputs)` over at least `seconds` (after one warm-up call)."""
    model(*inputs)
    sync(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        model(*inputs)
        calls += 1
    sync(device)
    return calls * batch / (time.perf_counter() - start)


def at_precision(net: torch.nn.Module, precision: str, device: torch.device, work: Path):
    """`net` as the Synthesizer runs it at `precision`; Wav2Lip's int8 graph is made by the same
    quantizer, calibrated like CASync's on one batch of its (random) inputs."""
    if precision != "int8" or isinstance(net, CASyncNet):
        return build_generator(net, precision, device, work)
    path = work / f"{type(net).__name__}.int8.onnx"
    calibration = [x.numpy() for x in net.example_inputs(16)]
    quantize_generator(net.eval(), path, calibration, names=["mel", "faces"])
    session = OnnxGenerator(path, threads=torch.get_num_threads())
    return lambda *inputs: session(*[x.numpy() for x in inputs])


def model_rows(device: torch.device, seconds: float, rounds: int, work: Path) -> list[dict]:
    precisions = [p for p in PRECISIONS if resolve_precision(p, device) == p]
    rows = []
    for precision in precisions:
        torch.manual_seed(0)
        models = {
            WAV2LIP: Wav2LipGenerator(),
            "CASync (paper size, 160x160)": CASyncNet(**FULL),
            "CASync (paper size, BatchNorm folded)": CASyncNet(**FULL, norm="batch"),
            "CASync tiny (width 0.25, mel)": CASyncNet(**TINY),
            "CASync tiny, BatchNorm folded": CASyncNet(**TINY, norm="batch"),
        }
        for name, model in models.items():
            stats = model_complexity(model.eval(), model.example_inputs(1))
            run = at_precision(model, precision, device, work)
            for batch in (1, 16):
                inputs = tuple(x.to(device) for x in model.example_inputs(batch))
                if precision == "int8" and isinstance(model, CASyncNet):
                    run(*inputs)  # quantizes (calibrated on this batch) before the timing
                rows.append({"model": name, "precision": precision, "batch": batch, "net": run,
                             "inputs": inputs, "params_m": stats["params_m"],
                             "gmacs": stats["gmacs"], "fps": []})  # fmt: skip
    for _ in range(rounds):  # interleaved: each round measures every row once
        for row in rows:
            row["fps"].append(throughput(row["net"], row["inputs"], row["batch"], seconds, device))
    fp32 = {(r["model"], r["batch"]): r["fps"] for r in rows if r["precision"] == "fp32"}
    peer = {(r["precision"], r["batch"]): r["fps"] for r in rows if r["model"] == WAV2LIP}
    for row in rows:
        # Paired: each round's ratio uses the peer measured seconds apart, so load that changes
        # between rounds (other jobs on a shared machine) cancels out.
        base = peer[(row["precision"], row["batch"])]
        ratios = [fps / b for fps, b in zip(row["fps"], base, strict=True)]
        row["ratio"], row["ratio_range"] = statistics.median(ratios), (min(ratios), max(ratios))
        own = fp32[(row["model"], row["batch"])]
        row["vs_fp32"] = statistics.median(f / b for f, b in zip(row["fps"], own, strict=True))
        del row["net"], row["inputs"]
    for row in rows:  # after every ratio: the rounds' figures are shared by the rows above
        row["fps"] = statistics.median(row["fps"])
    return rows


def end_to_end(
    model: dict,
    audio_s: float | None,
    device: str,
    cache: Path,
    precision: str = "fp32",
    video: Path = SAMPLES / "video" / "aoc_8s.mp4",
    face_cache_mb: float = 1024,
) -> dict:
    """`Synthesizer.synthesize` on `video` (aoc_8s.mp4) + jfk_11s.flac (cut to `audio_s`),
    random weights (seed 0, so an int8 graph quantized by an earlier run of the model is reused)."""
    from casync.audio.frontend import SAMPLE_RATE
    from casync.contract import save_generator_checkpoint
    from casync.inference import Synthesizer
    from casync.media.audio import load_audio

    work = Path(tempfile.mkdtemp(prefix="casync-bench-"))
    # one checkpoint file per model, kept beside the track cache: the avatar cache is keyed by
    # the checkpoint's bytes, so a fresh file per run (its own timestamp) would re-track each run
    checkpoint = (
        cache
        / f"model-{hashlib.sha1(json.dumps(model, sort_keys=True).encode()).hexdigest()[:12]}.ckpt"
    )
    if not checkpoint.is_file():
        torch.manual_seed(0)
        save_generator_checkpoint(checkpoint, CASyncNet(**model), model, MEL)
    audio: Path | np.ndarray = SAMPLES / "audio" / "jfk_11s.flac"
    if audio_s is not None:
        audio = load_audio(audio, SAMPLE_RATE)[: int(audio_s * SAMPLE_RATE)]
    synth = Synthesizer.from_checkpoint(
        checkpoint, device=device, track_cache_dir=cache, progress=False,
        precision=precision, face_cache_mb=face_cache_mb,
    )  # fmt: skip
    return synth.synthesize(video, audio, work / "out.mp4")


def looping_clip(seconds: float, folder: Path) -> Path:
    """The first `seconds` of aoc_8s.mp4 as a clip of its own: an avatar's short source."""
    from casync.media.video import iter_frames
    from casync.media.writer import VideoWriter

    frames = iter_frames(SAMPLES / "video" / "aoc_8s.mp4", 25.0)
    first = next(frames)
    with VideoWriter(folder / "aoc_loop.mp4", 25.0, first.shape[1], first.shape[0]) as writer:
        writer.write(first)
        for _, frame in zip(range(int(seconds * 25) - 1), frames, strict=False):
            writer.write(frame)
    frames.close()
    return writer.path


def avatar_rows(device: str, cache: Path, loop_s: float = 2.0, audio_s: float = 8.0) -> list:
    """Paper size at the fastest precision here, on a `loop_s` source driven by `audio_s` of
    speech (ping-pong), without and with the face-feature cache."""
    precision = [p for p in PRECISIONS if resolve_precision(p, device) == p][-1]
    video = looping_clip(loop_s, cache)
    full = FULL | {"audio_feature_dim": 80}
    end_to_end(full, 1.0, device, cache, precision, video)  # tracks it (and quantizes) untimed
    label = f"paper size {precision}, looping {loop_s:g} s source, {audio_s:g} s audio"
    return [
        (f"{label}, no face cache", end_to_end(full, audio_s, device, cache, precision, video, 0)),
        (f"{label}, face cache", end_to_end(full, audio_s, device, cache, precision, video)),
    ]


def e2e_rows(args, cache: Path) -> list[tuple[str, dict]]:
    precisions = [p for p in PRECISIONS if resolve_precision(p, args.device) == p]
    full = FULL | {"audio_feature_dim": 80}
    runs = [("tiny fp32, first run of this video (tracks the face)",
             end_to_end(TINY, None, args.device, cache))]  # fmt: skip
    for precision in precisions:
        if precision == "int8":  # quantize once (calibrated on real frames), outside the timing
            end_to_end(TINY, 1.0, args.device, cache, precision)
            end_to_end(full, 1.0, args.device, cache, precision)
        result = end_to_end(TINY, None, args.device, cache, precision)
        runs.append((f"tiny {precision}, face track cached", result))
        result = end_to_end(full, args.full_e2e_seconds, args.device, cache, precision)
        runs.append((f"paper size {precision}, {args.full_e2e_seconds:g} s audio, track cached",
                     result))  # fmt: skip
    return runs + avatar_rows(args.device, cache)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--full-e2e-seconds", type=float, default=4.0,
                        help="audio length for the paper-size end-to-end run")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    args.threads = torch.get_num_threads()  # before the Whisper front end sets it to its own
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="casync-int8-"))
    rows = model_rows(device, args.seconds, args.rounds, work)
    cache = Path(tempfile.mkdtemp(prefix="casync-tracks-"))
    runs = e2e_rows(args, cache)
    models = {"tiny": TINY, "paper size": FULL}
    streams = stream_rows(args.device, cache, SAMPLES, models, looping_clip(2.0, cache))
    load_after = os.getloadavg()
    write_report(args, device, rows, runs, streams, load_before, load_after)


def write_report(args, device, rows, runs, streams, load_before, load_after) -> None:
    name = "inference.md" if device.type == "cpu" else f"inference_{device.type}.md"
    path = ROOT / "benchmarks" / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {args.threads} threads"
    )
    lines = [
        "# Inference speed",
        "",
        f"Made by `{' '.join(['python -m benchmarks.inference_bench', *sys.argv[1:]])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}: {hardware}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}. "
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs share "
        "this machine: compare ratios, which are measured in the same interleaved rounds).",
        "",
        f"## Model only (frames/s: median of {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s each)",
        "",
        "`vs Wav2Lip` is the median over rounds of each round's ratio to the Wav2Lip generator "
        "at the same batch size and precision (measured seconds apart), with the smallest and "
        "largest round; `vs fp32` the same against the model's own fp32 row.",
        "",
        "| model | precision | params (M) | GMACs/frame | batch | frames/s | vs Wav2Lip "
        "| rounds' range | vs fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        low, high = r["ratio_range"]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['params_m']:.2f} | {r['gmacs']:.2f} | "
            f"{r['batch']} | {r['fps']:.1f} | {r['ratio']:.2f}x | {low:.2f}-{high:.2f}x | "
            f"{r['vs_fp32']:.2f}x |"
        )
    lines += [
        "",
        "## End to end (`Synthesizer.synthesize`, the `python -m casync.infer` path)",
        "",
        "aoc_8s.mp4 (512x512) driven by jfk_11s.flac; decode, log-mel features, generation "
        "(batch 16), colour-matched feathered paste-back, x264 veryfast + AAC. Targets: paper "
        "size >= 30 frames/s in the fastest path that passes tests/test_precision.py; tiny > 25 "
        "including face tracking. The looping rows are an avatar: the first 2 s of aoc_8s.mp4 "
        "ping-ponged under 8 s of speech, with the face encoder's output cached per source frame "
        "(`face_cache_mb`) or not.",
        "",
        "| run | frames | frames/s after tracking | frames/s incl. face tracking |",
        "|---|---:|---:|---:|",
    ]
    for label, result in runs:
        lines.append(
            f"| {label} | {result['frames']} | {result['render_fps']:.1f} | "
            f"{result['fps_achieved']:.1f} |"
        )
    lines += ["", *streams]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
