"""Training throughput: samples/s of a full optimisation step (forward, L1 loss, backward, AdamW)
for the full and tiny CASync on this machine, beside the DataModule's loader rate on the same
cache. The loader must deliver >= 10x the training rate so it never limits a GPU run.

    python -m benchmarks.train_bench --cache-dir data/cache --speaker aoc [--device cuda]

Writes benchmarks/results/train.md (or --output).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch

from casync.contract import network_inputs
from casync.data import CASyncDataModule
from casync.model import CASyncNet

MODELS = {"casync (full)": {}, "casync_tiny": {"width_multiplier": 0.25}}


def loader_rate(datamodule: CASyncDataModule, seconds: float) -> float:
    """Samples/s the train loader yields (workers warmed up first)."""
    loader = datamodule.train_dataloader()
    iterator, samples = iter(loader), 0
    next(iterator)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        samples += batch["target"].shape[0]
    return samples / (time.perf_counter() - start)


def train_rate(net: CASyncNet, batch: dict, steps: int, device: torch.device, bf16: bool) -> float:
    net = net.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            masked, mask = network_inputs(batch["target"], batch["mask"])
            out = net(masked, mask, batch["audio"], batch["reference"])
            loss = torch.nn.functional.l1_loss(out.float(), batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch["target"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--speaker", default="aoc")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default="benchmarks/results/train.md")
    args = parser.parse_args()

    device = torch.device(args.device)
    datamodule = CASyncDataModule(
        args.cache_dir, [args.speaker], batch_size=args.batch_size, num_workers=args.workers
    )
    datamodule.setup("fit")
    loader = loader_rate(datamodule, seconds=5.0)
    batch = next(iter(datamodule.train_dataloader()))
    feature_dim = batch["audio"].shape[-1]
    rows = []
    for name, kwargs in MODELS.items():
        net = CASyncNet(
            audio_feature_dim=feature_dim, audio_window=batch["audio"].shape[1], **kwargs
        )
        rate = train_rate(net, batch, args.steps, device, bf16=device.type == "cuda")
        rows.append((name, rate, loader / rate))
        print(f"{name}: {rate:.1f} samples/s; loader/train = {loader / rate:.1f}x")
    print(f"loader: {loader:.0f} samples/s ({args.workers} workers)")

    lines = [
        f"# Training throughput ({date.today()})",
        "",
        f"Command: `python -m benchmarks.train_bench --cache-dir {args.cache_dir} --speaker "
        f"{args.speaker} --batch-size {args.batch_size} --workers {args.workers} --device {device}`",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, device {device}, batch {args.batch_size}, "
        f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}; features {feature_dim}-d.",
        "",
        "| model | train samples/s | loader samples/s | loader / train |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {n} | {r:.1f} | {loader:.0f} | {x:.1f}x |" for n, r, x in rows]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
