"""Inference speed: model-only frames/s (batch 1 and 16) beside the Wav2Lip generator, and
end-to-end frames/s of `python -m casync.infer` (decode, features, generation, blending, encoding).

    python -m benchmarks.inference_bench [--device cpu|cuda] [--seconds 2] [--rounds 7]

Writes benchmarks/results/inference.md (or inference_<device>.md for a GPU). Weights are random:
only cost matters. All models run fp32 in the same process, measured in interleaved rounds (the
median round is reported), so a busy machine slows every row alike and the ratios stay fair.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as casync.infer sets it; before torch

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.wav2lip import Wav2LipGenerator
from casync.model import CASyncNet
from casync.model.complexity import model_complexity

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("CASYNC_SAMPLE_DIR", ROOT.parent / "shared" / "data"))
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
FULL = {"audio_feature_dim": 1024, "audio_window": 10}  # the paper's HuBERT-large features
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}  # casync_tiny+mel


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


def model_rows(device: torch.device, seconds: float, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    models = {
        "Wav2Lip generator (96x96, mel 80x16)": Wav2LipGenerator(),
        "CASync (paper size, 160x160)": CASyncNet(**FULL),
        "CASync tiny (width 0.25, mel)": CASyncNet(**TINY),
    }
    rows = []
    for name, model in models.items():
        model.eval().to(device)
        stats = model_complexity(model.cpu(), model.example_inputs(1))
        # channels_last weights for every model (the Synthesizer runs CASync this way): oneDNN's
        # fast convolution layout on CPU, ~1.25x here for both CASync and Wav2Lip.
        model.to(device, memory_format=torch.channels_last)
        for batch in (1, 16):
            inputs = tuple(x.to(device) for x in model.example_inputs(batch))
            rows.append({"model": name, "batch": batch, "net": model, "inputs": inputs,
                         "params_m": stats["params_m"], "gmacs": stats["gmacs"], "fps": []})  # fmt: skip
    for _ in range(rounds):  # interleaved: each round measures every row once
        for row in rows:
            row["fps"].append(throughput(row["net"], row["inputs"], row["batch"], seconds, device))
    baseline = {r["batch"]: r["fps"] for r in rows if r["model"].startswith("Wav2Lip")}
    for row in rows:
        # Paired: each round's ratio uses the baseline measured seconds apart, so load that
        # changes between rounds (other jobs on a shared machine) cancels out.
        ratios = [fps / base for fps, base in zip(row["fps"], baseline[row["batch"]], strict=True)]
        row["ratio"], row["ratio_range"] = statistics.median(ratios), (min(ratios), max(ratios))
        row["fps"] = statistics.median(row["fps"])
        del row["net"], row["inputs"]
    return rows


def end_to_end(model: dict, audio_s: float | None, device: str, cache: Path) -> dict:
    """`Synthesizer.synthesize` on aoc_8s.mp4 + jfk_11s.flac (cut to `audio_s`), random weights."""
    from casync.inference import Synthesizer
    from casync.media.audio import load_audio
    from casync.training.checkpoint import save_generator_checkpoint

    work = Path(tempfile.mkdtemp(prefix="casync-bench-"))
    torch.manual_seed(0)
    save_generator_checkpoint(work / "model.ckpt", CASyncNet(**model), model, MEL)
    audio: Path | np.ndarray = SAMPLES / "audio" / "jfk_11s.flac"
    if audio_s is not None:
        audio = load_audio(audio)[: int(audio_s * 16_000)]
    synth = Synthesizer.from_checkpoint(
        work / "model.ckpt", device=device, track_cache_dir=cache, progress=False
    )
    return synth.synthesize(SAMPLES / "video" / "aoc_8s.mp4", audio, work / "out.mp4")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--full-e2e-seconds", type=float, default=4.0,
                        help="audio length for the paper-size end-to-end run")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    rows = model_rows(device, args.seconds, args.rounds)
    cache = Path(tempfile.mkdtemp(prefix="casync-tracks-"))
    cold = end_to_end(TINY, None, args.device, cache)  # tracks the face, fills the cache
    warm = end_to_end(TINY, None, args.device, cache)  # the same source, another audio run
    full = end_to_end(FULL | {"audio_feature_dim": 80}, args.full_e2e_seconds, args.device, cache)
    load_after = os.getloadavg()
    write_report(args, device, rows, cold, warm, full, load_before, load_after)


def write_report(args, device, rows, cold, warm, full, load_before, load_after) -> None:
    name = "inference.md" if device.type == "cpu" else f"inference_{device.type}.md"
    path = ROOT / "benchmarks" / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    lines = [
        "# Inference speed",
        "",
        f"Made by `{' '.join(['python -m benchmarks.inference_bench', *sys.argv[1:]])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}: {hardware}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, fp32, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}. "
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs share "
        "this machine: compare ratios, which are measured in the same interleaved rounds).",
        "",
        f"## Model only (frames/s: median of {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s each)",
        "",
        "`vs Wav2Lip` is the median over rounds of each round's ratio to the Wav2Lip generator "
        "at the same batch size (measured seconds apart), with the smallest and largest round.",
        "",
        "| model | params (M) | GMACs/frame | batch | frames/s | vs Wav2Lip | rounds' range |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        low, high = r["ratio_range"]
        lines.append(
            f"| {r['model']} | {r['params_m']:.2f} | {r['gmacs']:.2f} | {r['batch']} | "
            f"{r['fps']:.1f} | {r['ratio']:.2f}x | {low:.2f}-{high:.2f}x |"
        )
    lines += [
        "",
        "## End to end (`Synthesizer.synthesize`, the `python -m casync.infer` path)",
        "",
        "aoc_8s.mp4 (512x512) driven by jfk_11s.flac; decode, log-mel features, generation "
        "(batch 16), colour-matched feathered paste-back, x264 veryfast + AAC. Target: tiny >= 25 "
        "frames/s without tracking.",
        "",
        "| run | frames | frames/s after tracking | frames/s incl. face tracking |",
        "|---|---:|---:|---:|",
    ]
    runs = [
        ("tiny, first run of this video (tracks the face)", cold),
        ("tiny, video's face track cached", warm),
        (f"paper size, {args.full_e2e_seconds:g} s of audio, track cached", full),
    ]
    for label, result in runs:
        lines.append(
            f"| {label} | {result['frames']} | {result['render_fps']:.1f} | "
            f"{result['fps_achieved']:.1f} |"
        )
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
