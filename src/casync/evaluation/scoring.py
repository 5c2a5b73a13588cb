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
from casync.evaluation.lip_landmarks import LipLandmarkExtractor, LipLandmarks, mouth_opening
from casync.evaluation.metrics import landmark_metrics, method_metrics
from casync.evaluation.plots import plot_mouth_opening
from casync.evaluation.report import write_report
from casync.evaluation.runner import (
    HeldOut,
    HeldOutGenerator,
    composite,
    held_out_range,
    source_references,
)
from casync.evaluation.sync import ShiftCheck, shift_check
from casync.evaluation.syncnet import SYNCNET_MISSING_MESSAGE, load_syncnet, lse
from casync.evaluation.verdict import notes, verdict
from casync.runtime import resolve_device

log = logging.getLogger(__name__)
DEFAULT_VAL_FRACTION = 0.25  # CASyncDataModule's default


def training_split(checkpoint: str) -> dict:
    """The split settings of the checkpoint's run (`data.val_fraction`, `data.gap`: Lightning
    stores the datamodule's hyperparameters); those it does not say (a hand-made checkpoint)
    are missing."""
    data = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
    return {key: data[key] for key in ("val_fraction", "gap") if data.get(key) is not None}


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
    held = held_out_range(cache, val_fraction, gap)
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
    lips, check, check_all = lips_and_sync(cfg, held, generate, frames)

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
        "methods": methods,
        "landmark_floor": {k: floor[k] for k in ("lmd", "opening_corr", "landmark_frames")},
        "shift_check": check.to_dict(),
        "shift_check_all_frames": check_all.to_dict(),
        "lpips_label": None if lpips_metric is None else lpips_metric.label,
        "lse_message": None if syncnet is not None else SYNCNET_MISSING_MESSAGE,
        "verdict": verdict(methods, check),
        "notes": notes(held, lpips_metric, methods, check, floor),
        "files": {
            "json": str(out / "metrics.json"),
            "markdown": str(out / "metrics.md"),
            "plot": str(plot),
        },
    }
    write_report(results, out / "metrics.json", out / "metrics.md")
    return results


def method_frames(held: HeldOut, generate: HeldOutGenerator) -> dict[str, np.ndarray]:
    """The frames each method makes of the held-out range: CASync driven by its own audio, the
    still-mouth baseline (each source's closed-mouth training frame) and the real frames."""
    real, masks = held.crops(), held.masks()
    still = held.closed_mouth_crops()[held.source_index()]
    return {
        "casync": generate(real, masks, held.windows(0), "generate (aligned audio)"),
        "still_mouth": composite(real, still, masks),
        "real": real,
    }


def held_out_summary(held: HeldOut, val_fraction: float, reference_used: list[str]) -> dict:
    return {
        "frames": len(held),
        "val_fraction": float(val_fraction),
        "ranges_s": [[s.id, t0, t1] for s, t0, t1 in held.time_ranges()],
        "references": {s.id: used for s, used in zip(held.sources, reference_used, strict=True)},
    }


def lips_and_sync(
    cfg: DictConfig, held: HeldOut, generate: HeldOutGenerator, frames: dict[str, np.ndarray]
) -> tuple[dict[str, LipLandmarks], ShiftCheck, ShiftCheck]:
    """Lip landmarks of every method's frames, and the audio-shift sync check over speech frames
    and over all frames (shifted generations are made only for the shifts the check asks for)."""
    real, masks = frames["real"], held.masks()
    with LipLandmarkExtractor(**cfg.evaluate.landmarks) as extractor:
        lips = {name: extractor(f, progress=cfg.progress) for name, f in frames.items()}
        shifted: dict[int, np.ndarray] = {0: lips["casync"].points}

        def shifted_lips(shift: int) -> np.ndarray:
            if shift not in shifted:
                crops = generate(real, masks, held.windows(shift), f"generate (shift {shift:+d})")
                shifted[shift] = extractor(crops, progress=cfg.progress).points
            return shifted[shift]

        # Sync is scored where there is speech: in silence the real mouth rests or breathes as it
        # likes, and the product holds a still mouth. All frames are reported beside it.
        speech = held.speech(cfg.silence_dbfs)
        real_points, shifts_s = lips["real"].points, list(cfg.evaluate.shifts_s)
        has_audio = held.has_shifted_audio
        check = shift_check(shifted_lips, real_points, held.fps, shifts_s, frames=speech,
                            has_audio=has_audio)  # fmt: skip
        check_all = shift_check(shifted_lips, real_points, held.fps, shifts_s, has_audio=has_audio)
    return lips, check, check_all
