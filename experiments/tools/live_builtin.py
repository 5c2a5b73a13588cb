"""The built-in avatar of `python -m casync.live` (assets/live/): a checkpoint trained on the GRID
sample the repository carries, slimmed to what `casync.contract.load_generator` reads (no
optimizer state) with fp16 weights, and the idle clip: a silent stretch of the same sample.

    python -m casync.demo demo.front_end=mel output_dir=outputs/live_builtin   # ~12 min, 2 cores
    python experiments/tools/live_builtin.py outputs/live_builtin/<the run's last.ckpt>
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import torch

from casync.media.video import iter_frames

ASSETS = Path(__file__).resolve().parents[2] / "assets"
IDLE = (2672, 2715)  # frames of grid_s1_sample.mp4: 1.7 s without speech, 0.2 s from any word


def slim_checkpoint(source: Path, target: Path) -> None:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("net.")
    }
    torch.save(
        {
            "hyper_parameters": checkpoint["hyper_parameters"],
            "state_dict": state,
            "casync": checkpoint["casync"],
        },
        target,
    )


def idle_clip(target: Path) -> None:
    start, stop = IDLE
    frames = [
        f
        for i, f in enumerate(iter_frames(ASSETS / "grid_s1_sample.mp4", 25.0))
        if start <= i < stop
    ]
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "16", "preset": "slow"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


if __name__ == "__main__":
    slim_checkpoint(Path(sys.argv[1]), ASSETS / "live" / "grid_s1_mel.ckpt")
    idle_clip(ASSETS / "live" / "grid_s1_idle.mp4")
