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
    fps: float = 25.0,
    label: str = "CASync",
) -> Path:
    """Mouth opening (see `lip_landmarks.mouth_opening`) over time, generated vs real, saved as
    a PNG at `path`. Frames without a face are gaps in the lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = np.arange(len(real_opening)) / fps
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
