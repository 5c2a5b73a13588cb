"""Probe (issue 23): where the fp32 and bf16 time goes, CASync paper size (BatchNorm folded)
against the Wav2Lip generator, by kind of layer, with each kind's MACs and its GMAC/s.

A forward hook pair times every leaf module (the graphs `build_generator` runs: folded,
channels-last, bf16 weights for bf16); what no leaf module covers (additions, concatenations,
reshapes inside `forward`s) is "glue". Each kind's MACs are counted from its shapes, so GMAC/s
says how well the hardware runs that kind: memory-bound kinds (depthwise convolutions, norms)
stand out. Run on a quiet machine, one torch thread by default (as the live server):

    PYTHONPATH=. .venv/bin/python experiments/tools/op_time_probe.py --batch 16 --calls 10
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.inference_bench import FULL
from benchmarks.wav2lip import Wav2LipGenerator
from casync.inference.pointwise import PointwiseCrossAttention, PointwiseLinear
from casync.inference.precision import build_generator, resolve_precision
from casync.model import CASyncNet


def kind(module: nn.Module) -> str:
    if isinstance(module, PointwiseLinear):  # the fp32 graph's linear layers (as 1x1 convs)
        return "linear"
    if isinstance(module, PointwiseCrossAttention):
        return "cross-attention (projections, softmax)"
    if isinstance(module, nn.Conv2d | nn.Conv1d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise conv"
        return "1x1 conv" if module.kernel_size in ((1, 1), (1,)) else "kxk conv"
    if isinstance(module, nn.ConvTranspose2d):
        return "transposed conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.MultiheadAttention):
        return "cross-attention (projections, softmax)"
    if isinstance(module, nn.GroupNorm | nn.BatchNorm2d | nn.BatchNorm1d | nn.LayerNorm):
        return "norm"
    if isinstance(module, nn.SiLU | nn.ReLU | nn.GELU | nn.Hardswish | nn.Sigmoid | nn.Tanh):
        return "activation"
    if isinstance(module, nn.Upsample):
        return "upsample"
    return "other leaf: " + type(module).__name__


def macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d | nn.Conv1d | nn.ConvTranspose2d):
        per_output = (
            module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
        )
        if isinstance(module, nn.ConvTranspose2d):  # each input value feeds k*k*out outputs
            per_output = module.in_channels * int(torch.tensor(module.kernel_size).prod())
            per_output = per_output // (module.stride[0] * module.stride[1])
        return output.numel() * per_output
    if isinstance(module, PointwiseLinear):
        return output.numel() * module.conv.in_channels
    if isinstance(module, PointwiseCrossAttention):  # q and out projections over the queries
        return 2 * output.numel() * output.shape[-1]
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, nn.MultiheadAttention):  # q and out projections over the queries
        return 2 * output.numel() * module.embed_dim  # (k, v over the few audio tokens: small)
    return 0


def leaves(net: nn.Module) -> list[nn.Module]:
    """Modules without children, with each attention and pointwise-linear block timed whole."""
    whole = (nn.MultiheadAttention, PointwiseCrossAttention, PointwiseLinear)
    attention = [m for m in net.modules() if isinstance(m, whole)]
    within = {id(c) for m in attention for c in m.modules() if c is not m}
    plain = [m for m in net.modules() if not list(m.children()) and id(m) not in within]
    return plain + attention


@torch.inference_mode()
def profile(net: nn.Module, run, inputs, calls: int) -> tuple[dict, float]:
    """{kind: [seconds, MACs]} per call, and the whole call's seconds."""
    spent = collections.defaultdict(lambda: [0.0, 0])
    starts: dict[int, float] = {}
    handles = []
    for module in leaves(net):

        def before(m, args):
            starts[id(m)] = time.perf_counter()

        def after(m, args, output):
            out = output[0] if isinstance(output, tuple) else output
            entry = spent[kind(m)]
            entry[0] += time.perf_counter() - starts.pop(id(m))
            entry[1] += macs(m, out)

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    run(*inputs)  # warm-up (kernels chosen, memory pooled)
    spent.clear()
    start = time.perf_counter()
    for _ in range(calls):
        run(*inputs)
    total = (time.perf_counter() - start) / calls
    for handle in handles:
        handle.remove()
    return {k: (s / calls, m // calls) for k, (s, m) in spent.items()}, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="op-probe-"))
    torch.manual_seed(0)
    models = {
        "Wav2Lip generator": Wav2LipGenerator(),
        "CASync paper size, BatchNorm folded": CASyncNet(**FULL, norm="batch"),
    }
    for precision in dict.fromkeys(resolve_precision(p, "cpu") for p in ("fp32", "bf16")):
        for name, model in models.items():
            run = build_generator(model.eval(), precision, "cpu", work)
            net = run.net if hasattr(run, "net") else run
            inputs = tuple(model.example_inputs(args.batch))
            table, total = profile(net, run, inputs, args.calls)
            covered = sum(s for s, _ in table.values())
            print(f"\n## {name}, {precision}, batch {args.batch}: {total * 1000:.0f} ms per call, "
                  f"{args.batch / total:.1f} frames/s")  # fmt: skip
            print("| kind | ms per call | share | GMACs | GMAC/s |")
            print("|---|---:|---:|---:|---:|")
            rows = sorted(table.items(), key=lambda kv: -kv[1][0])
            rows.append(("glue (outside leaf modules)", (total - covered, 0)))
            for k, (s, m) in rows:
                rate = f"{m / s / 1e9:.1f}" if m and s > 0 else ""
                print(f"| {k} | {s * 1000:.1f} | {s / total:.0%} | {m / 1e9:.2f} | {rate} |")


if __name__ == "__main__":
    main()
