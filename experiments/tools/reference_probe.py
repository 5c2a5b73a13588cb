"""Score a checkpoint with another reference frame than the closed mouth inference uses (#24).

    PYTHONPATH=. python experiments/tools/reference_probe.py open_mouth checkpoint=... [evaluate overrides]

`open_mouth`: each source's most open training frame (teeth in view, where the footage shows
them), `closed_mouth`: its closed-mouth training frame (a control: for a checkpoint that ships
that frame it must reproduce `casync.evaluate`). Only the reference fed to the network changes:
the frames, audio, the still-mouth baseline (the closed mouth), metrics and files are
`casync.evaluate`'s.
"""

from __future__ import annotations

import sys

import numpy as np

from casync.data.reference import closed_mouth_frame
from casync.evaluation import scoring
from casync.face.lips import mouth_opening


def open_mouth_frame(source, frames: range) -> int:
    """The frame of `frames` with the most open mouth among those where a face was found."""
    candidates = np.arange(frames.start, frames.stop)
    found = np.asarray(source.face_found[candidates], dtype=bool)
    if found.any():  # as closed_mouth_frame: every frame when no face was found
        candidates = candidates[found]
    opening = mouth_opening(np.asarray(source.landmarks[candidates], dtype=np.float32))
    return int(candidates[int(np.argmax(opening))])


CHOICES = {"open_mouth": open_mouth_frame, "closed_mouth": closed_mouth_frame}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in CHOICES:
        sys.exit(f"usage: reference_probe.py {{{'|'.join(CHOICES)}}} checkpoint=... [overrides]")
    choice = CHOICES[sys.argv.pop(1)]

    def references(generator, held):
        frames = [choice(s, r) for s, r in zip(held.sources, held.train, strict=True)]
        print(f"reference frames: {frames}", flush=True)
        crops = [np.array(s.crops[f]) for s, f in zip(held.sources, frames, strict=True)]
        return np.stack(crops), [f"its {choice.__name__[:-6]} training frame"] * len(frames)

    scoring.source_references = references
    from casync.evaluate import main as evaluate_main

    evaluate_main()


if __name__ == "__main__":
    main()
