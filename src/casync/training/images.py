"""Validation image grids (masked input | generated | target | reference), for any logger."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from casync.contract import network_inputs


def comparison_grid(batch: dict, prediction: torch.Tensor, count: int) -> torch.Tensor:
    """(3, H', W') grid, one row per sample: masked | generated | target [| reference]; the
    masked column is the network's input (`contract.network_inputs`)."""
    masked, _ = network_inputs(batch["target"], batch["mask"])
    columns = [masked, prediction, batch["target"]]
    if batch.get("reference") is not None:
        columns.append(batch["reference"])
    rows = torch.stack(
        [c[:count].detach().float().cpu() for c in columns], dim=1
    )  # (n, k, 3, H, W)
    return make_grid(rows.flatten(0, 1), nrow=len(columns), padding=2).clamp(0, 1)


def log_image(loggers, key: str, grid: torch.Tensor, step: int, trainer) -> None:
    """W&B and TensorBoard get the image natively; otherwise a PNG in the run folder."""
    logged = False
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            logger.log_image(key=key, images=[grid], step=step)
            logged = True
        elif kind == "TensorBoardLogger":
            logger.experiment.add_image(key, grid, step)
            logged = True
    # Not `trainer.log_dir`: it broadcasts, and this runs on rank 0 only (a DDP deadlock).
    folder = next((lg.log_dir for lg in loggers if getattr(lg, "log_dir", None)), None)
    folder = folder or (trainer.default_root_dir if trainer is not None else None)
    if not logged and folder:
        path = Path(folder) / "images" / f"{key.replace('/', '_')}_{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
