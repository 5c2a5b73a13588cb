"""Figures for the evaluation report, drawn with matplotlib's Agg canvas directly (no pyplot:
no display needed, and importing this never changes a notebook's backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_mouth_opening(
    gen_opening: np.ndarray,
    real_opening: np.ndarray,
    path: str | Path,
    seconds: np.ndarray,
    label: str = "CASync",
) -> Path:
    """Mouth opening (see `lip_landmarks.mouth_opening`) over time, generated vs real, saved as
    a PNG at `path`. `seconds` is each frame's time in its source (the held-out range's own
    times); frames without a face, and jumps between sources, are gaps in the lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = np.asarray(seconds, dtype=np.float64)
    if len(seconds) != len(real_opening):
        raise ValueError(f"{len(seconds)} times for {len(real_opening)} frames")
    breaks = np.flatnonzero(np.diff(seconds) <= 0) + 1  # a new source starts: no joining line
    seconds = np.insert(seconds, breaks, np.nan)
    real_opening = np.insert(np.asarray(real_opening, np.float64), breaks, np.nan)
    gen_opening = np.insert(np.asarray(gen_opening, np.float64), breaks, np.nan)
    figure = Figure(figsize=(10, 3), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.plot(seconds, real_opening, label="real", color="black", linewidth=1.2)
    axis.plot(seconds, gen_opening, label=label, color="tab:orange", linewidth=1.2)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("mouth opening (gap / width)")
    axis.legend(loc="upper right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
