"""What a checkpoint's scores conclude: the verdict (the demo's two claims and the library's
stricter sync verdict) and the notes the report prints beside the tables."""

from __future__ import annotations

import numpy as np

from casync.evaluation.runner import HeldOut


def verdict(methods: dict, check) -> dict[str, bool]:
    """The two claims the demo makes, and the library's stricter sync verdict."""
    gen, still = methods["casync"]["lmd"], methods["still_mouth"]["lmd"]
    return {
        "beats_still_mouth_lmd": bool(np.isfinite(gen) and np.isfinite(still) and gen < still),
        "positive_shift_margin": bool(check.lmd_margin > 0 and check.correlation_margin > 0),
        "follows_audio": bool(check.follows_audio),
    }


def notes(held: HeldOut, lpips_metric, methods: dict, check, floor: dict) -> list[str]:
    ranges = ", ".join(f"{s.id} {t0:.2f}-{t1:.2f} s" for s, t0, t1 in held.time_ranges())
    lines = [
        f"Held-out range: {len(held)} frames ({ranges}), driven by its own audio.",
        "Generated mouths are pasted into the real crops with the regenerate mask (as inference "
        "does), so pixels outside the mask are real for every method; 'mouth' = the mask's box.",
        "Still-mouth baseline: the real crop with its mask region taken from one closed-mouth "
        "frame of the training range. Real frames: the real crop against itself.",
        f"For scale: on the same real frames, lips detected on the crops and the preprocessing "
        f"tracker's (full frames) differ by LMD {floor['lmd']:.3f} px, opening corr "
        f"{floor['opening_corr']:.3f} (landmark measurement noise).",
    ]
    if lpips_metric is None:
        lines.append("LPIPS not computed (metrics.lpips=none).")
    missing = {k: int(v.get("no_face_gen", 0)) for k, v in methods.items() if v.get("no_face_gen")}
    if missing:
        lines.append(f"Frames where no lips were found (skipped by LMD): {missing}.")
    d = verdict(methods, check)
    lines.append(
        f"CASync LMD {methods['casync']['lmd']:.3f} px vs still mouth "
        f"{methods['still_mouth']['lmd']:.3f} px: "
        + ("beats the still-mouth baseline." if d["beats_still_mouth_lmd"] else "does NOT beat it.")
    )
    return lines
