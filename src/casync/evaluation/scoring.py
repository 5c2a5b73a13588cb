"""Scoring a checkpoint on a speaker's held-out range (`evaluate(cfg)`, which
`python -m casync.evaluate` calls): the generated frames beside a still-mouth baseline and the
real frames, the audio-shift sync check, optional SyncNet LSE, and the report files
(metrics.json, metrics.md, mouth_opening.png) in `paths.output_dir`. Each source's frames are
generated with the reference inference would use for that video (`source_references`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from casync.audio.frontend import SAMPLE_RATE
from casync.contract import LoadedGenerator, check_cache, load_generator, read_checkpoint
from casync.data.cache import SpeakerCache, open_cache
from casync.evaluation.image_metrics import LPIPSMetric, mouth_box
from casync.evaluation.lip_landmarks import LipLandmarkExtractor, mouth_opening
from casync.evaluation.lipsync import lips_and_sync, method_frames, sync_summary
from casync.evaluation.metrics import landmark_metrics, method_metrics
from casync.evaluation.plots import plot_mouth_opening
from casync.evaluation.report import write_report
from casync.evaluation.runner import (
    HeldOut,
    HeldOutGenerator,
    held_out_range,
    source_references,
)
from casync.evaluation.syncnet import SYNCNET_MISSING_MESSAGE, load_syncnet, lse
from casync.evaluation.verdict import notes, verdict
from casync.runtime import resolve_device

log = logging.getLogger(__name__)
DEFAULT_VAL_FRACTION = 0.25  # CASyncDataModule's default


SPLIT_KEYS = ("val_fraction", "test_fraction", "gap")


def training_split(checkpoint: str) -> dict:
    """The split settings of the checkpoint's run (`data.val_fraction`, `data.test_fraction`,
    `data.gap`: Lightning stores the datamodule's hyperparameters); those it does not say (a
    hand-made checkpoint) are missing."""
    data = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
    return {key: data[key] for key in SPLIT_KEYS if data.get(key) is not None}


def held_out_split(checkpoint: str, requested: float | None) -> tuple[float, int | None]:
    """-> (`evaluate.val_fraction`, the run's `data.gap`). The fraction is refused when it
    reaches into the frames the checkpoint trained on (a larger fraction than its run held out
    would score training frames as held out)."""
    split = training_split(checkpoint)
    trained, gap = split.get("val_fraction"), split.get("gap")
    if requested is None:
        return (float(trained) if trained is not None else DEFAULT_VAL_FRACTION), gap
    if trained is not None and float(requested) > trained + 1e-9:
        raise ValueError(
            f"evaluate.val_fraction={requested} is larger than the {trained} checkpoint "
            f"'{checkpoint}' held out in training: frames it trained on would be scored as held "
            f"out. Use evaluate.val_fraction<={trained} (or null: the checkpoint's own)"
        )
    return float(requested), gap


def scored_split(checkpoint: str, requested: str | None) -> tuple[str, float]:
    """-> (`evaluate.split`: "test" or "val", the run's `data.test_fraction`). Default (null):
    the test range when the run held one out, else the validation range (which also selected
    the checkpoint: its scores are optimistic, and the report says so)."""
    test_fraction = float(training_split(checkpoint).get("test_fraction", 0.0))
    split = requested or ("test" if test_fraction > 0 else "val")
    if split not in ("val", "test"):
        raise ValueError(f"evaluate.split={split!r}: choose val, test or null (test if held out)")
    if split == "test" and test_fraction <= 0:
        raise ValueError(
            f"evaluate.split=test, but checkpoint '{checkpoint}' was trained without a test range "
            "(data.test_fraction=0): use evaluate.split=val, or train with data.test_fraction > 0"
        )
    return split, test_fraction


def selection_note(split: str, test_fraction: float) -> str:
    """Which data selected the checkpoint and which reports: the line every report carries."""
    if split == "test":
        return (
            "Selection and report are separate: the checkpoint (and any sweep trial) was selected "
            "on the validation range; these scores are on the test range "
            f"(the last {test_fraction:.0%} of each source), which training and selection never saw."
        )
    return (
        "These scores are on the validation range, the data that selected the checkpoint (best "
        "val/sync/objective) and any sweep trial: optimistic for a selected model. Train with "
        "data.test_fraction > 0 for a range that only reports."
    )


def build_lpips(cfg: DictConfig, device: str) -> LPIPSMetric | None:
    if cfg.metrics.lpips in (None, "none"):
        return None
    return LPIPSMetric(
        cfg.metrics.lpips, cfg.metrics.lpips_weights, cfg.evaluate.allow_random_backbone, device
    )


def require_source_audio(held: HeldOut) -> None:
    """LSE needs the waveform, which the cache does not keep: the source files must still exist."""
    missing = [s.info["path"] for s in held.sources if not Path(s.info["path"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"LSE needs the held-out audio from the speaker's source videos, and {missing} no "
            "longer exist(s): restore them, or drop evaluate.syncnet_checkpoint"
        )


def lse_scores(syncnet, held: HeldOut, frames: np.ndarray) -> dict[str, float]:
    """LSE-D/LSE-C of `frames` against the held-out audio, frame-weighted over sources."""
    from casync.media.audio import load_audio

    scores, start = [], 0
    for source, t0, t1 in held.time_ranges():
        n = round((t1 - t0) * held.fps)
        waveform = load_audio(source.info["path"], SAMPLE_RATE)[
            round(t0 * SAMPLE_RATE) : round(t1 * SAMPLE_RATE)
        ]
        scores.append((n, lse(syncnet, frames[start : start + n], waveform, held.fps)))
        start += n
    total = sum(n for n, _ in scores)
    return {k: sum(n * s[k] for n, s in scores) / total for k in ("lse_d", "lse_c")}


def build_syncnet(cfg: DictConfig, held: HeldOut, device: str):
    """The SyncNet expert for LSE, or None without `evaluate.syncnet_checkpoint`."""
    if not cfg.evaluate.syncnet_checkpoint:
        return None
    syncnet = load_syncnet(cfg.evaluate.syncnet_checkpoint, device)
    require_source_audio(held)
    return syncnet


def score_methods(
    held: HeldOut, frames: dict, lips: dict, lpips_metric: LPIPSMetric | None, syncnet
) -> dict[str, dict[str, float]]:
    """Each method's metrics against the real frames (+ LSE-D/LSE-C with a SyncNet)."""
    box = mouth_box(held.masks())
    return {
        name: method_metrics(
            frames[name], frames["real"], lips[name], lips["real"], box, lpips_metric
        )
        | ({} if syncnet is None else lse_scores(syncnet, held, frames[name]))
        for name in frames
    }


def open_inputs(cfg: DictConfig) -> tuple[str, LoadedGenerator, SpeakerCache, float]:
    """-> (checkpoint path, its generator, the speaker's cache, the held-out fraction and the
    run's gap), with the checkpoint, the cache and their compatibility checked before any work."""
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ValueError("missing checkpoint: python -m casync.evaluate checkpoint=run.ckpt ...")
    checkpoint = str(cfg.checkpoint)
    generator = load_generator(checkpoint)
    cache = open_cache(cfg.paths.cache_dir, str(cfg.speaker.name))
    masks = {source.id: source.mask for source in cache.sources}
    check_cache(generator, cache.meta, str(cache.root), checkpoint, masks)
    return checkpoint, generator, cache, held_out_split(checkpoint, cfg.evaluate.val_fraction)


def evaluate(cfg: DictConfig) -> dict:
    """Score `cfg.checkpoint` on `cfg.speaker`'s held-out range; returns the results dict that
    `casync.evaluation.write_report` writes (methods, shift_check, verdict, notes, paths)."""
    checkpoint, generator, cache, (val_fraction, gap) = open_inputs(cfg)
    split, test_fraction = scored_split(checkpoint, cfg.evaluate.get("split"))
    held = held_out_range(cache, val_fraction, gap, test_fraction, split)
    device = resolve_device(cfg.device)
    lpips_metric = build_lpips(cfg, device)  # fail on missing weights before the work
    syncnet = build_syncnet(cfg, held, device)  # and on a missing SyncNet or source audio
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    references, reference_used = source_references(generator, held)
    generate = HeldOutGenerator(
        generator.net, references, held.source_index(), device, cfg.batch_size, cfg.progress
    )
    frames = method_frames(held, generate)
    with LipLandmarkExtractor(**cfg.evaluate.landmarks) as extractor:
        lips, check, check_all = lips_and_sync(
            held, generate, frames, extractor, cfg.evaluate.shifts_s, cfg.silence_dbfs,
            progress=cfg.progress,
        )  # fmt: skip

    floor = landmark_metrics(lips["real"], held.tracked_lips())
    methods = score_methods(held, frames, lips, lpips_metric, syncnet)
    plot = plot_mouth_opening(
        mouth_opening(lips["casync"].points),
        mouth_opening(lips["real"].points),
        out / "mouth_opening.png",
        held.frame_times(),
    )
    results = {
        "checkpoint": checkpoint,
        "speaker": cache.speaker,
        "held_out": held_out_summary(held, val_fraction, reference_used),
        "selection": {"selected_on": "val", "reported_on": split, "test_fraction": test_fraction},
        "methods": methods,
        "sync": sync_summary(methods["casync"], methods["still_mouth"], check),
        "landmark_floor": {k: floor[k] for k in ("lmd", "opening_corr", "landmark_frames")},
        "shift_check": check.to_dict(),
        "shift_check_all_frames": check_all.to_dict(),
        "lpips_label": None if lpips_metric is None else lpips_metric.label,
        "lse_message": None if syncnet is not None else SYNCNET_MISSING_MESSAGE,
        "verdict": verdict(methods, check),
        "notes": [
            selection_note(split, test_fraction),
            *notes(held, lpips_metric, methods, check, floor),
        ],
        "files": {
            "json": str(out / "metrics.json"),
            "markdown": str(out / "metrics.md"),
            "plot": str(plot),
        },
    }
    write_report(results, out / "metrics.json", out / "metrics.md")
    return results


def held_out_summary(held: HeldOut, val_fraction: float, reference_used: list[str]) -> dict:
    return {
        "split": held.split,
        "frames": len(held),
        "val_fraction": float(val_fraction),
        "ranges_s": [[s.id, t0, t1] for s, t0, t1 in held.time_ranges()],
        "references": {s.id: used for s, used in zip(held.sources, reference_used, strict=True)},
    }
