"""A still montage of mouths: rows of lower-face crops, cut with the preprocessing tracker from
each video at the same frame indices, labelled. Used to look at what a run generates (driven by
other speech) beside the real footage.

    python experiments/tools/montage.py OUT.png --video real=src.mp4 --video generated=out.mp4 \
        [--frames 12] [--start 0] [--stop N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from omegaconf import OmegaConf

from casync.face import cut_crop
from casync.face.track import track_video
from casync.media.video import iter_frames

# The preprocessing tracker as conf/preprocess.yaml sets it up.
PREPROCESS = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "preprocess.yaml")
FPS, CROP = PREPROCESS.preprocess.fps, PREPROCESS.preprocess.crop_size
SMOOTHING = PREPROCESS.preprocess.smoothing


def mouth_crops(video: Path, indices: np.ndarray) -> list[np.ndarray]:
    """The mouth band of the tracker's crops at `indices` (rows 25-75 %, where the lips sit;
    see `casync.face.crop.MOUTH_TOP`), shown at 2x; a frame with no face stays grey."""
    track = track_video(video, FPS, CROP, SMOOTHING)
    wanted, crops = set(indices.tolist()), {}
    for k, frame in enumerate(iter_frames(video, FPS)):
        if k in wanted:
            band = cut_crop(frame, track.transforms[k], CROP)[CROP // 4 : 3 * CROP // 4]
            crops[k] = cv2.resize(band, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    blank = np.full((CROP, 2 * CROP, 3), 128, np.uint8)
    return [crops.get(k, blank) for k in indices.tolist()]


def montage(out: Path, videos: dict[str, Path], n: int, start: int, stop: int | None) -> Path:
    if stop is None:
        stop = min(sum(1 for _ in iter_frames(v, FPS)) for v in videos.values())
    indices = np.linspace(start, stop - 1, n).round().astype(int)
    rows = []
    for label, video in videos.items():
        row = np.hstack(mouth_crops(video, indices))
        tag = np.zeros((row.shape[0], 150, 3), np.uint8)
        cv2.putText(tag, label, (6, row.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 1)  # fmt: skip
        rows.append(np.hstack([tag, row]))
    image = np.vstack(rows)
    cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--video", action="append", required=True, help="label=path")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop", type=int, default=None)
    args = parser.parse_args()
    videos = {k: Path(v) for k, v in (item.split("=", 1) for item in args.video)}
    print(montage(args.out, videos, args.frames, args.start, args.stop))


if __name__ == "__main__":
    main()
