"""Lip-sync scores at validation time: `val/sync/<name>` beside val/psnr, measured by the
evaluation's own functions (`casync.evaluation.lipsync`) on the start of the validation range,
and `val/sync/objective`, the number checkpoints, early stopping and sweeps select by."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from casync.evaluation.image_metrics import mouth_box
from casync.evaluation.lip_landmarks import LipLandmarkExtractor, LipLandmarks
from casync.evaluation.lipsync import lips_and_sync, still_mouth_frames, sync_summary
from casync.evaluation.metrics import landmark_metrics, mouth_sharpness
from casync.evaluation.runner import HeldOut, HeldOutGenerator
from casync.media.audio import SILENCE_DBFS

log = logging.getLogger(__name__)


class LipSyncValidation(Callback):
    """After each validation pass (not the sanity check), generate the first `max_frames`
    validation frames (contiguous per source: correlations and shifts need time order) with the
    weights that ship (EMA when enabled) and the reference inference uses (each source's
    closed-mouth training frame, the contract's), find their lips, run the shift check, and log
    `casync.evaluation.lipsync.SYNC_KEYS` as `val/sync/<key>`.

    Deterministic: the frames are fixed, the landmark detector runs in static-image mode (no
    tracking) and is created afresh each pass. The real and still-mouth frames' landmarks do not
    change during a run and are measured once. Under DDP rank 0 measures and broadcasts."""

    def __init__(
        self,
        max_frames: int = 250,
        shifts_s: list[float] | None = None,
        silence_dbfs: float = SILENCE_DBFS,
        batch_size: int = 16,
        landmarks: dict | None = None,
    ) -> None:
        if max_frames < 25:
            raise ValueError(
                f"callbacks.lipsync.max_frames={max_frames}: the correlation and shift check need "
                "at least 25 frames (1 s); e.g. 250"
            )
        self.max_frames = max_frames
        self.shifts_s = list(shifts_s if shifts_s is not None else (-0.2, 0.2))
        self.silence_dbfs, self.batch_size = silence_dbfs, batch_size
        self.landmarks = dict(landmarks or {})
        self._held: HeldOut | None = None
        self._known: dict[str, LipLandmarks] = {}  # the real and still-mouth frames' lips
        self.seconds = 0.0  # time spent measuring, over the run (the cost the record reports)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        scores = self.measure(trainer, pl_module) if trainer.is_global_zero else None
        scores = trainer.strategy.broadcast(scores, src=0)
        for key, value in scores.items():
            pl_module.log(f"val/sync/{key}", value, prog_bar=key == "objective")

    def held_out(self, trainer: L.Trainer) -> HeldOut:
        if self._held is None:
            data = trainer.datamodule
            if data is None or not hasattr(data, "val_set"):
                raise ValueError(
                    "callbacks.lipsync needs the CASyncDataModule (trainer.fit(..., datamodule=)); "
                    "drop it with callbacks=none"
                )
            self._held = HeldOut(data).limit(self.max_frames)
        return self._held

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        start = time.perf_counter()
        held = self.held_out(trainer)
        scores, self._known = sync_scores(
            held, pl_module.generator, str(pl_module.device), self.shifts_s, self.silence_dbfs,
            self.batch_size, self.landmarks, self._known,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        log.info("lip-sync validation on %d frames: %.1f s, %s", len(held), elapsed, scores)
        return scores


def sync_scores(
    held: HeldOut,
    net: torch.nn.Module,
    device: str = "cpu",
    shifts_s: list[float] = (-0.2, 0.2),
    silence_dbfs: float = SILENCE_DBFS,
    batch_size: int = 16,
    landmarks: dict | None = None,
    known: dict[str, LipLandmarks] | None = None,
) -> tuple[dict[str, float], dict[str, LipLandmarks]]:
    """`casync.evaluation.lipsync.sync_summary` of `net` on `held` (each frame generated with its
    source's closed-mouth training frame as the reference: the contract's, `contract.record`)
    -> (scores, the real and still-mouth frames' lips, to pass back as `known` next time)."""
    real, masks = held.crops(), held.masks()
    references = held.closed_mouth_crops()
    generate = HeldOutGenerator(net, references, held.source_index(), device, batch_size)
    frames = {
        "casync": generate(real, masks, held.windows(0)),
        "still_mouth": still_mouth_frames(held, real, masks),
        "real": real,
    }
    with LipLandmarkExtractor(**(landmarks or {})) as extractor:  # afresh: nothing carried over
        lips, check, _ = lips_and_sync(
            held, generate, frames, extractor, shifts_s, silence_dbfs, known
        )
    box = mouth_box(masks)
    methods = {
        name: landmark_metrics(lips[name], lips["real"])
        | {"mouth/sharpness": mouth_sharpness(frames[name], real, box)}
        for name in ("casync", "still_mouth")
    }
    scores = sync_summary(methods["casync"], methods["still_mouth"], check)
    return scores, {name: lips[name] for name in ("real", "still_mouth")}
