"""Seamless paste-back: a feathered alpha from the regenerate-mask, and colour matching of the
generated crop to the frame over a ring just inside the mask edge.

The ring shows skin (philtrum, cheeks, jaw) in both the source crop and the generated crop, so a
difference of mean/spread there is a colour cast of the generator, not content. Matching it per
channel (spread ratio clamped) removes the faint box a slightly-off crop leaves even under a soft
edge. Frame pixels where the warped alpha is 0 keep their exact source values.

The warp itself is `casync.face.paste_back`, restricted to the alpha's bounding box (it runs once
per output frame, inside the real-time budget).
"""

from __future__ import annotations

import cv2
import numpy as np

from casync.face.crop import alpha_support, feathered, paste_back


class Blender:
    def __init__(
        self,
        mask: np.ndarray,
        feather: float = 5.0,
        color_match: bool = True,
        ring_width: int = 8,
        max_gain: float = 1.25,
    ) -> None:
        """mask: the (S, S) hard region the network regenerates (1 inside: the checkpoint's);
        feather: Gaussian sigma of the alpha edge in crop pixels (the alpha reaches about
        2 sigma outside the hard mask); ring_width: crop pixels inside the mask edge whose colour
        statistics are matched; max_gain: bound on the per-channel spread correction."""
        hard = np.asarray(mask, np.float32)
        self.alpha = feathered(hard, feather) if feather > 0 else hard
        inner = cv2.erode(hard, np.ones((3, 3), np.uint8), iterations=ring_width)
        self.ring = (hard > 0) & (inner == 0)  # (S, S) bool
        self.color_match = color_match
        self.max_gain = max_gain
        self.support = alpha_support(self.alpha)  # crop-space box of every nonzero alpha

    def match_colour(self, generated: np.ndarray, source: np.ndarray) -> np.ndarray:
        """generated (S, S, 3) float32 RGB in [0, 255]; source (S, S, 3) uint8 crop of the frame.
        Returns `generated` with the ring's per-channel mean/std moved onto the source's."""
        generated = np.asarray(generated, np.float32)
        gen_ring, src_ring = generated[self.ring], source[self.ring].astype(np.float32)  # (K, 3)
        gain = np.clip(
            src_ring.std(0) / np.maximum(gen_ring.std(0), 1e-3), 1 / self.max_gain, self.max_gain
        )
        shift = src_ring.mean(0) - gen_ring.mean(0) * gain
        return np.clip(generated * gain.astype(np.float32) + shift.astype(np.float32), 0, 255)

    def __call__(
        self, frame: np.ndarray, generated: np.ndarray, source: np.ndarray, transform: np.ndarray
    ) -> np.ndarray:
        """Paste `generated` (S, S, 3) float32 in [0, 255] into a copy of `frame` (H, W, 3) uint8
        through `transform` (2, 3) frame -> crop; `source` is the frame's own crop."""
        if self.color_match:
            generated = self.match_colour(generated, source)
        return paste_back(frame, generated, transform, self.alpha, self.support)
