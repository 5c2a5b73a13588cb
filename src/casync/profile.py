"""`python -m casync.profile`: parameters and GMACs per part, the paper's efficiency table with this
build's row beside it, forward throughput, and the params-vs-GMACs comparison figure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command
from casync.model.complexity import model_complexity
from casync.runtime import resolve_device
from casync.train import CONFIG_DIR

# The paper's efficiency table: (params in millions, GMACs per frame; the table calls them GFLOPs).
PAPER_TABLE = {
    "CASync (paper)": (19.79, 4.08),
    "Wav2Lip": (36.30, 3.99),
    "VideoRetalking": (325.09, 174.80),
    "MuseTalk": (946.9, 548.4),
    "LatentSync": (1360.0, 6230.0),
}


@torch.inference_mode()
def measure_throughput(model, batch_size: int, seconds: float, device: torch.device) -> float:
    """Forward frames per second at `batch_size` (one warm-up pass, then a time budget)."""
    model = model.to(device).eval()
    inputs = tuple(x.to(device) for x in model.example_inputs(batch_size))
    model(*inputs)
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or frames == 0:
        model(*inputs)
        frames += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def efficiency_table(measured: dict) -> str:
    rows = [("CASync (this build)", measured["params_m"], measured["gmacs"])]
    rows += [(name, p, g) for name, (p, g) in PAPER_TABLE.items()]
    lines = ["| model | params (M) | GMACs / frame |", "|---|---:|---:|"]
    lines += [f"| {name} | {p:,.2f} | {g:,.2f} |" for name, p, g in rows]
    return "\n".join(lines)


def parts_table(measured: dict) -> str:
    lines = ["| part | params (M) | GMACs |", "|---|---:|---:|"]
    for name, part in measured["parts"].items():
        lines.append(f"| {name} | {part['params_m']:.3f} | {part['gmacs']:.3f} |")
    lines.append(f"| **total** | **{measured['params_m']:.3f}** | **{measured['gmacs']:.3f}** |")
    return "\n".join(lines)


def comparison_figure(measured: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = {**PAPER_TABLE, "CASync (this build)": (measured["params_m"], measured["gmacs"])}
    for name, (params, gmacs) in points.items():
        is_ours = name.startswith("CASync")
        ax.scatter(params, gmacs, s=60, color="tab:red" if is_ours else "tab:blue", zorder=3)
        offset = (6, -12) if name == "CASync (this build)" else (6, 4)
        ax.annotate(name, (params, gmacs), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="parameters (M)", ylabel="GMACs per frame")
    ax.set_title("Lip-sync generators: size vs compute")
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def profile(cfg: DictConfig) -> dict:
    """Measure the configured model; print tables; write JSON (if `output`) and the figure."""
    model = instantiate(cfg.model)
    measured = model_complexity(model, model.example_inputs(1))
    device = torch.device(resolve_device(cfg.device))
    batch = cfg.batch_size
    fps = measure_throughput(model, batch, cfg.throughput.seconds, device)
    measured["throughput"] = {"device": str(device), "batch_size": batch, "frames_per_s": fps}

    print("Per part (trainable, frozen HuBERT excluded; MACs = FlopCounterMode FLOPs / 2):")
    print(parts_table(measured))
    print("\nEfficiency (the paper's rows, and this build's measured row):")
    print(efficiency_table(measured))
    print(f"\nForward throughput on {device}: {fps:.1f} frames/s at batch {batch}")
    figure = comparison_figure(measured, Path(cfg.figure))
    print(f"figure: {figure}")
    if cfg.output:
        out = Path(cfg.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(measured, indent=2))
        print(f"json: {out}")
    return measured


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="profile")
def hydra_main(cfg: DictConfig) -> None:
    profile(cfg)


main = command(hydra_main)


if __name__ == "__main__":
    main()
