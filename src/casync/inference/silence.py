"""The silence hold: a silent run of frames shows one generated crop (its first frame's), so the
mouth stays still, across groups of frames too; frames without a face show none."""

from __future__ import annotations

import numpy as np

HELD, NO_FACE = -1, -2  # a frame's owner: the crop held from an earlier group; no crop at all


class SilenceHold:
    """Per group: which frames to generate (`plan`) and which crop each frame shows (`shown`);
    `finish` keeps the crop of a silent run that may go on into the next group."""

    def __init__(self) -> None:
        self.crop: np.ndarray | None = None  # the held crop of the current silent run
        self._run: int | None = None  # the open silent run's owner after `plan`

    def plan(self, silent: np.ndarray, has_face: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """(n,) silent and face flags -> (each frame's owner: an index into the crops to
        generate, HELD or NO_FACE; the frames to generate)."""
        owner, todo = np.empty(len(silent), np.int64), []
        run = HELD if self.crop is not None else None
        for i, (quiet, face) in enumerate(zip(silent, has_face, strict=True)):
            if not face:
                owner[i] = NO_FACE
                continue
            if quiet and run is not None:
                owner[i] = run
                continue
            owner[i] = len(todo)
            todo.append(i)
            run = owner[i] if quiet else None
        self._run = run
        return owner, todo

    def shown(self, owner: int, generated: np.ndarray) -> np.ndarray:
        """The crop a frame with this owner shows (call before `finish`)."""
        return self.crop if owner == HELD else generated[owner]

    def finish(self, generated: np.ndarray) -> None:
        if self._run is None:
            self.crop = None
        elif self._run >= 0:
            self.crop = generated[self._run]
