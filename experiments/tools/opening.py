"""How much a video's mouth moves: the inner-lip opening (gap / mouth width) of every frame,
from the project's face tracker, summarised per video. Used to compare lip-synced output
driven by other speech with the real footage (a model that only follows its own speaker's
voice opens the mouth less for another voice).

    python experiments/tools/opening.py real=heldout.mp4 driven=driven.mp4 [--json out.json]

Prints per video: frames, the opening's median, 10th-90th percentile range and its standard
deviation, and each video's range as a fraction of the first video's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from casync.face.lips import mouth_opening
from casync.face.track import track_video

FPS, CROP_SIZE, SMOOTHING = 25.0, 160, 1.5  # the project's preprocessing defaults


def opening_stats(path: Path) -> dict:
    track = track_video(path, FPS, CROP_SIZE, SMOOTHING)
    opening = mouth_opening(track.landmarks)
    opening = opening[np.isfinite(opening)]
    p10, p50, p90 = np.percentile(opening, [10, 50, 90])
    return {
        "frames": int(len(opening)),
        "median": float(p50),
        "p10_p90_range": float(p90 - p10),
        "std": float(opening.std()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="label=path; the first is the baseline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    stats = {}
    for item in args.videos:
        label, _, path = item.partition("=")
        stats[label] = opening_stats(Path(path))
    base = next(iter(stats.values()))["p10_p90_range"]
    for label, s in stats.items():
        s["range_vs_first"] = s["p10_p90_range"] / base
        print(
            f"{label:>24}: {s['frames']} frames, opening median {s['median']:.3f}, "
            f"p10-p90 range {s['p10_p90_range']:.3f} ({s['range_vs_first']:.2f}x), "
            f"std {s['std']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    main()
