"""Probe (issue 23): does quantizing the depthwise convolutions too close the int8 gap to Wav2Lip
once BatchNorm is folded (no norm left between the convolutions)?

Rows, model only, at batch 1 and 16, in interleaved rounds (ratios paired per round, as
`benchmarks.inference_bench` does): the Wav2Lip generator at int8 (the same quantizer), and the
paper-size CASync with BatchNorm folded at int8, quantizing the dense convolutions only (the
product's recipe) or every convolution, with SiLU (the model's) or ReLU swapped in (which the
runtime folds into a quantized convolution's output range). Run on a quiet machine:

    PYTHONPATH=. .venv/bin/python experiments/tools/int8_depthwise_probe.py --rounds 5 --seconds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

import casync.inference.precision as precision
from benchmarks.inference_bench import FULL, WAV2LIP, at_precision, throughput
from benchmarks.wav2lip import Wav2LipGenerator
from casync.model import CASyncNet


def with_relu(net: torch.nn.Module) -> torch.nn.Module:
    """`net` with each SiLU module replaced by ReLU (the blocks use modules, not functions)."""
    for name, child in net.named_children():
        if isinstance(child, torch.nn.SiLU):
            setattr(net, name, torch.nn.ReLU(inplace=True))
        else:
            with_relu(child)
    return net


def quantizing(every_conv: bool):
    """The product's int8 recipe, or one that quantizes the depthwise convolutions too."""
    precision.depthwise_convs = (lambda graph: []) if every_conv else ORIGINAL
    precision.QUANTIZATION = "all" if every_conv else "dense"


ORIGINAL = precision.depthwise_convs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu")
    work = Path(tempfile.mkdtemp(prefix="int8-probe-"))
    variants = {
        "BN folded, SiLU, dense convs int8 (product)": (False, False),
        "BN folded, SiLU, every conv int8": (True, False),
        "BN folded, ReLU, dense convs int8": (False, True),
        "BN folded, ReLU, every conv int8": (True, True),
    }
    rows = []
    torch.manual_seed(0)
    peer = Wav2LipGenerator().eval()
    peer_run = at_precision(peer, "int8", device, work)
    for batch in (1, 16):
        rows.append({"model": WAV2LIP, "batch": batch, "run": peer_run,
                     "inputs": peer.example_inputs(batch), "fps": []})  # fmt: skip
    for name, (every_conv, relu) in variants.items():
        torch.manual_seed(0)
        net = CASyncNet(**FULL, norm="batch").eval()
        net = with_relu(net) if relu else net
        quantizing(every_conv)
        run = at_precision(net, "int8", device, work / name.replace(" ", "_").replace(",", ""))
        for batch in (1, 16):
            inputs = net.example_inputs(batch)
            run(*inputs)  # quantizes (calibrated on this batch) before the timing
            rows.append({"model": name, "batch": batch, "run": run, "inputs": inputs, "fps": []})
    quantizing(False)
    for round_ in range(args.rounds):
        for row in rows:
            row["fps"].append(
                throughput(row["run"], row["inputs"], row["batch"], args.seconds, device)
            )
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    base = {r["batch"]: r["fps"] for r in rows if r["model"] == WAV2LIP}
    print("| model (int8) | batch | frames/s | x Wav2Lip (median, range) |")
    print("|---|---|---|---|")
    for row in rows:
        ratios = [f / b for f, b in zip(row["fps"], base[row["batch"]], strict=True)]
        print(
            f"| {row['model']} | {row['batch']} | {statistics.median(row['fps']):.1f} | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
