"""A sweep study's trials as a markdown table (state, objective, its parts, the sampled
parameters), best first, plus which trial a killed worker's retry replays.

    python experiments/tools/sweep_table.py sqlite:////work/sweeps/grid_s1/sweep/study.db casync_grid_s1
"""

from __future__ import annotations

import argparse
import math

import optuna

SHORT = {
    "optim.lr": "lr",
    "loss.mouth_weight": "mouth w",
    "loss.perceptual": "perceptual",
    "loss.perceptual_weight": "perc w",
    "data.reference": "reference",
    "model.width_multiplier": "width",
    "trainer.max_steps": "steps",
    "audio": "front end",
}
PARTS = ("lmd_ratio", "opening_corr", "sharpness", "lmd_margin", "corr_margin")


def cell(value) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.3g}"
    return "—" if value is None else str(value)


def table(study: optuna.Study) -> str:
    head = ["trial", "state", "objective", *PARTS, "val/psnr", "minutes", *SHORT.values(), "note"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    key = lambda t: (t.state.name != "COMPLETE", t.value if t.value is not None else math.inf)  # noqa: E731
    for t in sorted(study.trials, key=key):
        metrics = t.user_attrs.get("metrics", {})
        note = []
        if "failed_trial" in t.system_attrs:
            note.append(f"retry of {t.system_attrs['failed_trial']}")
        if t.user_attrs.get("baseline"):
            note.append(t.user_attrs["baseline"])
        row = [t.number, t.state.name, t.value]
        row += [metrics.get(f"val/sync/{p}") for p in PARTS]
        row += [metrics.get("val/psnr"), metrics.get("time/train_minutes")]
        row += [t.params.get(k) for k in SHORT] + ["; ".join(note)]
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage")
    parser.add_argument("study_name")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(table(optuna.load_study(study_name=args.study_name, storage=args.storage)))
