"""Evaluation results -> a JSON file and a markdown table, each written atomically.

`results` layout (what `casync.evaluate` builds):
    methods:      {"casync" | "still_mouth" | "real": {metric key: float | None}}
    shift_check:  ShiftCheck.to_dict() for CASync on frames with speech, or None
    shift_check_all_frames: the same on every held-out frame (optional)
    lpips_label:  LPIPSMetric.label, or None when LPIPS was not computed
    lse_message:  why LSE-C/LSE-D are missing, or None
    sync:         `lipsync.sync_summary` (the selection objective and its parts), optional
    notes:        extra lines for the markdown
Other keys are kept in the JSON only. NaN and inf become null (strict JSON).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from casync.atomic import atomic_write_text
from casync.evaluation.image_metrics import PSNR_CAP_DB, RANDOM_BACKBONE_LABEL

ROWS = {
    "casync": "CASync",
    "still_mouth": "still-mouth baseline",
    "real": "real frames (upper bound)",
}
COLUMNS = {  # metric key -> header; the arrow says which way is better
    "crop/psnr": "PSNR ↑",
    "crop/ssim": "SSIM ↑",
    "crop/lpips": "LPIPS ↓",
    "mouth/psnr": "mouth PSNR ↑",
    "mouth/ssim": "mouth SSIM ↑",
    "mouth/lpips": "mouth LPIPS ↓",
    "mouth/sharpness": "mouth sharpness (gen/real) ↑",
    "lmd": "LMD (px) ↓",
    "opening_corr": "opening corr ↑",
    "opening_amplitude": "opening amplitude (gen/real) ↑",
    "lse_d": "LSE-D ↓",
    "lse_c": "LSE-C ↑",
}


def to_json_safe(value: object) -> object:
    """Recursively replace NaN/inf floats with None and tuples with lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return value


def format_value(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key.endswith("psnr"):
        return "∞" if value >= PSNR_CAP_DB else f"{value:.2f}"
    return f"{value:.3f}"


def metrics_table(methods: dict[str, dict[str, float | None]], lpips_label: str | None) -> str:
    """One row per method in `ROWS` order (unknown methods after), one column per metric that
    any method has."""
    keys = [k for k in COLUMNS if any(k in m for m in methods.values())]
    headers = [COLUMNS[k] for k in keys]
    if lpips_label == RANDOM_BACKBONE_LABEL:  # say it in the header, not just in a footnote
        headers = [h.replace("LPIPS", "LPIPS (random backbone, not perceptual)") for h in headers]
    order = [name for name in ROWS if name in methods] + [n for n in methods if n not in ROWS]
    lines = ["| method | " + " | ".join(headers) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in order:
        cells = [format_value(k, methods[name].get(k)) for k in keys]
        lines.append(f"| {ROWS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EVIDENCE = {
    "follows": "the mouth follows the audio at every shift",
    "does not follow": "at some shift, aligned audio is no better than shifted audio",
    "inconclusive": (
        "too few frames to tell: some interval includes 0 (more held-out speech needed: longer "
        "footage, or a larger data.val_fraction when training)"
    ),
}


def format_margin(value: float | None, interval: list | tuple | None) -> str:
    """A margin with its 90 % interval, e.g. `0.399 [0.102, 0.688]`."""
    text = format_value("", value)
    if interval is None or any(b is None or math.isnan(b) for b in interval):
        return text
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]"


def shift_table(check: dict) -> str:
    """The shift check: aligned scores, each shift, the margins with intervals, the verdict."""
    lines = [
        "| audio shift | frames | LMD (px) | opening corr | LMD margin [90 %] | corr margin [90 %] |",
        "|---|---|---|---|---|---|",
        f"| 0 s (aligned) | {check.get('frames', '')} | {format_value('lmd', check['aligned_lmd'])} | "
        f"{format_value('corr', check['aligned_correlation'])} | | |",
    ]
    for shift in check["shifts"]:
        cells = [
            format_value("", shift["lmd"]),
            format_value("", shift["correlation"]),
            format_margin(shift["lmd_margin"], shift.get("lmd_margin_ci")),
            format_margin(shift["correlation_margin"], shift.get("correlation_margin_ci")),
        ]
        lines.append(
            f"| {shift['shift_s']:+.1f} s ({shift['shift_frames']:+d} frames) | "
            f"{shift.get('frames', '')} | " + " | ".join(cells) + " |"
        )
    verdict = "follows the audio" if check["follows_audio"] else "does NOT clearly follow the audio"
    lines.append(
        f"\nSmallest margins: LMD {format_value('', check['lmd_margin'])} px, correlation "
        f"{format_value('', check['correlation_margin'])} -> **{verdict}**."
    )
    if check.get("evidence"):
        lines.append(
            f"Margin intervals (block bootstrap over the frames): **{check['evidence']}**: "
            f"{EVIDENCE[check['evidence']]}."
        )
    return "\n".join(lines)


def markdown_report(results: dict) -> str:
    parts = [
        "# CASync evaluation",
        "",
        metrics_table(results["methods"], results.get("lpips_label")),
    ]
    if results.get("sync"):
        sync = results["sync"]
        parts += [
            "",
            f"Lip-sync objective (what checkpoints and sweeps select by; lower is better, 0 = the "
            f"real lips): **{format_value('', sync['objective'])}** = LMD "
            f"{format_value('', sync['lmd_ratio'])}x the still mouth's + the opening-correlation "
            f"and sharpness guards (corr {format_value('', sync['opening_corr'])}, sharpness "
            f"{format_value('', sync['sharpness'])}; casync.evaluation.lipsync).",
        ]
    notes = list(results.get("notes", []))
    if results.get("lpips_label") == RANDOM_BACKBONE_LABEL:
        notes.append(
            "LPIPS used a random backbone (no ImageNet weights on this machine): it is not a "
            "perceptual metric. Set metrics.lpips_weights for a real one."
        )
    if results.get("lse_message"):
        notes.append(f"LSE-C/LSE-D not computed: {results['lse_message']}")
    notes.append(f"PSNR of identical frames is infinite (shown as ∞, stored as {PSNR_CAP_DB:g}).")
    if results.get("shift_check"):
        check = results["shift_check"]
        parts += [
            "",
            "## Audio shift check (CASync)",
            "",
            f"Scored on the {check.get('frames', '?')} held-out frames with speech (the verdict): "
            "in silence the real mouth rests or breathes as it likes and inference holds a still "
            "mouth, so silent frames say nothing about sync. Each shift is compared with aligned "
            "audio on the frames whose shifted audio exists (none past the ends of the "
            "recording); margins are shifted minus aligned on those frames.",
            "",
            shift_table(check),
        ]
    if results.get("shift_check_all_frames"):
        every = results["shift_check_all_frames"]
        parts += [
            "",
            f"### The same check on all {every.get('frames', '?')} held-out frames (for reference)",
            "",
            shift_table(every),
        ]
    parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(parts) + "\n"


def write_report(results: dict, json_path: str | Path, markdown_path: str | Path) -> None:
    """Write `results` as strict JSON and as a markdown report, each atomically."""
    text = json.dumps(to_json_safe(results), indent=2, allow_nan=False, ensure_ascii=False)
    atomic_write_text(json_path, text + "\n")
    atomic_write_text(markdown_path, markdown_report(results))
