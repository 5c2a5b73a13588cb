"""A long 1080p source prepared as an avatar: peak memory, folder size and time of
`python -m casync.avatar` on it, measured rather than extrapolated (`avatar_bench` measures
the start-up figures and a shorter source). Writes benchmarks/results/avatar_long.md.

    python -m benchmarks.avatar_long_bench [--seconds 600]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.avatar_bench import make_source, prepare_cost, tiny_checkpoint

RESULTS = Path(__file__).parent / "results" / "avatar_long.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    from casync.media.video import probe_video

    work = Path(tempfile.mkdtemp(prefix="casync-avatar-long-"))
    checkpoint = tiny_checkpoint(work / "tiny.ckpt")
    video = make_source(work / "long1080.mp4", 1920, 1080, args.seconds)
    duration = probe_video(video).duration_s
    if abs(duration - args.seconds) > 1:
        raise RuntimeError(f"the source lasts {duration:.1f} s, not {args.seconds:g} s")
    print(f"source: {duration:.0f} s, {video.stat().st_size / 1e9:.2f} GB", flush=True)
    rss, size, seconds = prepare_cost(video, checkpoint, work / "avatars" / "long1080")
    load = os.getloadavg()
    lines = [
        f"# Preparing a {args.seconds / 60:g}-minute 1080p source as an avatar",
        "",
        f"`python -m benchmarks.avatar_long_bench --seconds {args.seconds:g}` ({os.cpu_count()} "
        f"cores, load average at the end {load[0]:.1f}; tiny model, mel front end). The source is "
        "macron_50s (512x512) played forward and backward, upscaled to 1920x1080 (x264).",
        "",
        "| | target | measured |",
        "|---|---:|---:|",
        f"| peak memory of `python -m casync.avatar` (VmHWM) | < 2 GB | {rss:.2f} GB |",
        f"| avatar folder | < 2 GB | {size:.2f} GB |",
        f"| seconds | | {seconds:.0f} |",
        f"| source file ({duration:.0f} s) | | {video.stat().st_size / 1e9:.2f} GB |",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
