"""The idle loop: a stretch of the source where the speaker is silent and still, chosen by
measurement, shown ping-ponged while the avatar listens (the head keeps moving, the mouth stays
closed).

Every window of `seconds` is scored on three per-frame measures, each relative to the whole
video so that the score does not depend on the footage's scale or loudness:
- speech: the fraction of its frames whose audio is above the silence threshold (x2: a window
  with speech in it is the worst idle loop);
- mouth: its mean mouth opening (inner-lip gap / mouth width) over the video's 90th percentile;
- motion: its mean head motion (crop centre shift per frame, in crop sides, plus rotation) over
  the video's 90th percentile; a window where no face was found is excluded.
The longest window (from `seconds` down to `MIN_SECONDS`, in half seconds) whose best-scored
stretch is wholly quiet wins: no frame with speech, an open mouth (opening above half the 90th
percentile) or a cut between shots within `MARGIN_S` of it, since the lips part before a word's sound and close after
it. A short still loop ping-ponged looks alive; a long one that talks does not.
When no window is, the best window of `seconds` (the calmest stretch) is taken, and the reason
says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

IDLE_SECONDS = 3.0
MIN_SECONDS = 0.5  # ping-ponged: a 1 s period of breathing and blinking, better than a talking loop
SPEECH_WEIGHT = 2.0
MAX_MOUTH = 0.5  # an open mouth: opening above this fraction of the video's 90th percentile
MARGIN_S = 0.2  # a quiet window keeps this far from any speech, open mouth or cut
CUT_FACTOR, CUT_LEVELS = 6.0, 10.0  # a cut: crop change above 6x the median and 10 levels


@dataclass(frozen=True)
class IdleLoop:
    start: int  # first source frame of the loop
    stop: int  # one past its last
    fps: float
    reason: str  # why these seconds: the measures of the chosen window, or "set by the user"
    quiet: bool = True  # silent with the mouth closed (False: the calmest stretch of speech)

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start / self.fps, self.stop / self.fps

    def to_json(self) -> dict:
        return {**asdict(self), "start_s": self.seconds[0], "stop_s": self.seconds[1]}


def head_motion(params: np.ndarray) -> np.ndarray:
    """(N, 4) crop params (cx, cy, side, angle) -> (N,) motion into each frame (0 for frame 0):
    centre shift in crop sides plus the rotation change in radians."""
    shift = np.linalg.norm(np.diff(params[:, :2], axis=0), axis=1) / np.maximum(params[1:, 2], 1)
    turn = np.abs(np.diff(params[:, 3]))
    return np.concatenate([[0.0], shift + turn])


def cuts(change: np.ndarray) -> np.ndarray:
    """(N,) mean crop change into each frame -> (N,) bool: a cut (an edit between two shots,
    e.g. GRID's sentences: 15-32 levels against a median of 1.1), where a loop would jump."""
    return change > max(CUT_FACTOR * float(np.median(change)), CUT_LEVELS)


def choose_idle(
    speech: np.ndarray,
    opening: np.ndarray,
    motion: np.ndarray,
    face_found: np.ndarray,
    fps: float,
    seconds: float = IDLE_SECONDS,
    cut: np.ndarray | None = None,
) -> IdleLoop:
    """The idle loop (see the module doc); per-frame inputs: `speech` bool (audio above the
    silence threshold), `opening` (NaN without a face), `motion` (`head_motion`), `face_found`,
    `cut` (`cuts`: no loop spans one)."""
    opening = np.where(face_found, np.nan_to_num(opening, nan=0.0), 0.0)
    open_mouth = opening > MAX_MOUTH * float(np.percentile(opening[face_found], 90))
    jumps = np.zeros_like(face_found) if cut is None else cut
    busy = _dilated(speech | open_mouth | jumps, int(round(MARGIN_S * fps)))
    lengths = np.arange(seconds, MIN_SECONDS - 1e-9, -0.5)
    for length_s in lengths:
        window = _best_window(busy, opening, motion, face_found, fps, length_s)
        if window["speech"] == 0:
            window = _best_window(speech, opening, motion, face_found, fps, length_s, window)
            return _loop(window, fps, "the longest silent, closed-mouth stretch")
    calmest = _best_window(speech, opening, motion, face_found, fps, seconds)
    what = f"no silent, closed-mouth stretch of {MIN_SECONDS:g} s or more: the calmest"
    return _loop(calmest, fps, what, quiet=False)


def _dilated(flags: np.ndarray, margin: int) -> np.ndarray:
    """`flags` widened by `margin` frames on each side."""
    if margin <= 0:
        return flags
    counts = np.convolve(flags.astype(np.int32), np.ones(2 * margin + 1, np.int32), mode="same")
    return counts > 0


def _best_window(
    speech, opening, motion, face_found, fps: float, seconds: float, at: dict | None = None
) -> dict:
    """The lowest-scored window of `seconds` (or the measures of the window `at`)."""
    n = len(face_found)
    length = max(1, min(n, int(round(seconds * fps))))

    def window_means(values: np.ndarray) -> np.ndarray:
        sums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        return (sums[length:] - sums[:-length]) / length

    def relative(values: np.ndarray) -> np.ndarray:
        return window_means(values) / max(float(np.percentile(values[face_found], 90)), 1e-6)

    speech_part, mouth_part = window_means(speech.astype(np.float64)), relative(opening)
    motion_part = relative(motion)
    faceless = window_means((~face_found).astype(np.float64))
    score = np.where(faceless > 0, np.inf, SPEECH_WEIGHT * speech_part + mouth_part + motion_part)
    if np.isinf(score).all():  # no window without a faceless frame: the one with fewest
        score = faceless
    start = int(np.argmin(score)) if at is None else at["start"]
    return {"start": start, "stop": start + length, "speech": speech_part[start],
            "mouth": mouth_part[start], "motion": motion_part[start]}  # fmt: skip


def _loop(window: dict, fps: float, what: str, quiet: bool = True) -> IdleLoop:
    reason = (
        f"{what} ({(window['stop'] - window['start']) / fps:.1f} s): speech in "
        f"{window['speech']:.0%} of its frames, mouth opening {window['mouth']:.2f} and head "
        f"motion {window['motion']:.2f} of the video's 90th percentile"
    )
    return IdleLoop(window["start"], window["stop"], fps, reason, quiet)


def user_idle(range_s: tuple[float, float], n_frames: int, fps: float) -> IdleLoop:
    """The idle loop a user set as (start_s, stop_s); ValueError naming `idle=` if outside."""
    start, stop = (int(np.floor(t * fps + 0.5)) for t in range_s)  # 2.5 s -> frame 63
    if not 0 <= start < stop <= n_frames:
        raise ValueError(
            f"idle=[{range_s[0]:g},{range_s[1]:g}]: seconds within the video (0 to "
            f"{n_frames / fps:.2f} s), start before stop"
        )
    return IdleLoop(start, stop, fps, "set by the user (idle=)")
