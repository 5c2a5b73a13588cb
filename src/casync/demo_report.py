"""What the demo reports: demo_summary.json (the files each step wrote, the evaluation's headline
metrics and verdict, step times) and its plain-language conclusion."""

from __future__ import annotations

import json
from pathlib import Path

from casync.atomic import atomic_write_text
from casync.evaluation.report import EVIDENCE, to_json_safe


def summarize(
    quick: bool,
    inputs: tuple[Path, Path],
    checkpoint: Path,
    videos: tuple[Path, Path],
    results: dict,
    seconds: dict[str, float],
) -> dict:
    """The demo's summary from its (video, audio) `inputs`, the (lip-sync, side-by-side)
    `videos` it wrote and the evaluation `results` of `checkpoint`."""
    methods, check = results["methods"], results["shift_check"]
    return {
        "quick": bool(quick),
        "inputs": {"video": str(inputs[0]), "audio": str(inputs[1])},
        "checkpoint": str(checkpoint),
        "files": {
            "lipsync": str(videos[0]),
            "side_by_side": str(videos[1]),
            "metrics_table": results["files"]["markdown"],
            "metrics_json": results["files"]["json"],
            "mouth_opening_plot": results["files"]["plot"],
        },
        "verdict": results["verdict"],
        "metrics": {
            "casync_lmd": methods["casync"]["lmd"],
            "still_mouth_lmd": methods["still_mouth"]["lmd"],
            "casync_opening_corr": methods["casync"]["opening_corr"],
            "casync_opening_amplitude": methods["casync"]["opening_amplitude"],
            "casync_mouth_sharpness": methods["casync"]["mouth/sharpness"],
            "shift_lmd_margin": check["lmd_margin"],
            "shift_correlation_margin": check["correlation_margin"],
            "shift_frames": check["frames"],
            "shift_evidence": check["evidence"],
            "held_out_frames": results["held_out"]["frames"],
            "shift_lmd_margin_all_frames": results["shift_check_all_frames"]["lmd_margin"],
            "shift_correlation_margin_all_frames": results["shift_check_all_frames"][
                "correlation_margin"
            ],
        },
        "seconds": seconds,
    }


def write_summary(summary: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(to_json_safe(summary), indent=2))


def verdict_lines(summary: dict) -> list[str]:
    """The demo's plain-language conclusion."""
    m, v = summary["metrics"], summary["verdict"]
    lines = [
        f"LMD on the held-out range: CASync {m['casync_lmd']:.3f} px, still-mouth baseline "
        f"{m['still_mouth_lmd']:.3f} px -> "
        + (
            "CASync BEATS the still-mouth baseline."
            if v["beats_still_mouth_lmd"]
            else "CASync does NOT beat the still-mouth baseline."
        ),
        f"Mouth on the held-out range, relative to the real one: opening correlation "
        f"{m['casync_opening_corr']:.2f}, opening amplitude {m['casync_opening_amplitude']:.2f}, "
        f"sharpness {m['casync_mouth_sharpness']:.2f} (1.00 = as the real mouth).",
        f"Audio-shift check (+-0.2 s, +-0.5 s) on the {m['shift_frames']} held-out frames with "
        f"speech: smallest margins LMD {m['shift_lmd_margin']:+.3f} px, mouth-opening correlation "
        f"{m['shift_correlation_margin']:+.3f} -> "
        + (
            "POSITIVE: the mouth follows the audio."
            if v["positive_shift_margin"]
            else "NOT positive: no evidence here that the mouth follows the audio."
        ),
        f"The margins' 90 % intervals (block bootstrap over those frames): "
        f"{m['shift_evidence'].upper()}: {EVIDENCE[m['shift_evidence']]}.",
        f"(On all {m['held_out_frames']} held-out frames, silent ones included: LMD "
        f"{m['shift_lmd_margin_all_frames']:+.3f} px, correlation "
        f"{m['shift_correlation_margin_all_frames']:+.3f}.)",
    ]
    if summary["quick"]:
        lines.append(
            "Quick mode (a few training steps on a trimmed clip): checks the pipeline, not the "
            "model; a negative verdict is expected."
        )
    return lines
