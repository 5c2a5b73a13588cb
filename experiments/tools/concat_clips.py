"""Concatenate talking-head clips into one H.264 MP4 at the preprocessing frame rate (25 fps),
sound kept in sync per clip.

Used to build the GRID talker-1 footage of the experiments (all 100 sentences, the last ones
held out) and the demo's built-in sample (`assets/`). Each clip's audio is cut or padded to its
own video length before the next clip starts, so a clip's lips and sound stay aligned.

    python experiments/tools/concat_clips.py OUT.mp4 CLIP [CLIP ...] [--crf 23]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from casync.audio.frontend import SAMPLE_RATE
from casync.media.audio import load_audio
from casync.media.video import iter_frames
from casync.media.writer import VideoWriter

PREPROCESS = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "preprocess.yaml")
FPS = PREPROCESS.preprocess.fps  # conf/preprocess.yaml's, so the footage needs no resampling


def concat_clips(out: Path, clips: list[Path], crf: int = 23) -> Path:
    """Two passes: frame counts and audio first (the writer takes the soundtrack up front),
    then the frames, one clip at a time."""
    counts, sound = [], []
    for clip in tqdm(clips, desc="audio", unit="clip"):
        counts.append(sum(1 for _ in iter_frames(clip, FPS)))
        n_samples = round(counts[-1] / FPS * SAMPLE_RATE)
        audio = load_audio(clip, SAMPLE_RATE)[:n_samples]
        sound.append(np.pad(audio, (0, n_samples - len(audio))))
    height, width = next(iter_frames(clips[0], FPS)).shape[:2]
    audio = np.concatenate(sound)
    with VideoWriter(out, FPS, width, height, audio, SAMPLE_RATE, crf=crf) as writer:
        for clip, count in zip(tqdm(clips, desc="video", unit="clip"), counts, strict=True):
            for k, frame in enumerate(iter_frames(clip, FPS)):
                if k < count:
                    writer.write(frame)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--crf", type=int, default=23)
    args = parser.parse_args()
    print(concat_clips(args.out, args.clips, args.crf))


if __name__ == "__main__":
    main()
