"""CASyncSystem: the LightningModule around CASyncNet (losses, steps, metrics, optimisers).

Constructor arguments are plain typed values (the config schema, saved as hyper-parameters and
loadable with `weights_only=True`).
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from casync.contract import CheckpointError, GeneratorContract, network_inputs
from casync.model import CASyncNet
from casync.training.images import comparison_grid, log_image
from casync.training.losses import ReconstructionLoss

FROZEN_PREFIXES = (
    "loss_fn.perceptual.",
    "val_lpips_net.",
)  # pretrained, never saved in checkpoints


class CASyncSystem(L.LightningModule):
    def __init__(
        self,
        model: dict,
        audio: dict,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 200,
        min_lr_ratio: float = 0.05,
        ema_decay: float = 0.0,
        perceptual: str = "vgg",
        perceptual_weight: float = 0.1,
        mouth_weight: float = 0.0,
        detail_weight: float = 0.0,
        perceptual_region: str = "crop",
        vgg_weights: str = "imagenet",
        lpips: str = "none",
        lpips_weights: str | None = None,
        freeze: list[str] | None = None,
        num_image_samples: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = CASyncNet(**{k: v for k, v in model.items() if k != "_target_"})
        for part in freeze or []:
            if not hasattr(self.net, part):
                raise ValueError(f"finetune.freeze: '{part}' is not a part of CASyncNet")
            getattr(self.net, part).requires_grad_(False)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False) if ema_decay > 0 else None
        self.loss_fn = ReconstructionLoss(
            perceptual=perceptual,
            perceptual_weight=perceptual_weight,
            vgg_weights=vgg_weights,
            mouth_weight=mouth_weight,
            detail_weight=detail_weight,
            perceptual_region=perceptual_region,
        )
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_lpips_net = build_lpips(lpips, lpips_weights)
        self.val_lpips = MeanMetric() if self.val_lpips_net is not None else None
        # What inference needs to reproduce training (fps, mask, references...): set from the
        # data by `casync.train.build_system`, read back on resume; saved in every checkpoint.
        self.contract: GeneratorContract | None = None

    @property
    def generator(self) -> CASyncNet:
        """The weights to evaluate and ship: EMA when enabled."""
        return self.ema_net if self.ema_net is not None else self.net

    def forward(self, batch: dict[str, torch.Tensor], net: CASyncNet | None = None):
        """The batch's crops masked as inference masks them (`contract.network_inputs`)."""
        masked, mask = network_inputs(batch["target"], batch["mask"])
        return (net or self.net)(masked, mask, batch["audio"], batch.get("reference"))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.loss_fn(self(batch), batch["target"])
        batch_size = batch["target"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=batch_size)
        return terms["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema_net is None:
            return
        decay = self.hparams.ema_decay
        with torch.no_grad():
            for ema, live in zip(self.ema_net.parameters(), self.net.parameters(), strict=True):
                ema.lerp_(live, 1.0 - decay)
            for ema, live in zip(self.ema_net.buffers(), self.net.buffers(), strict=True):
                ema.copy_(live)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        prediction = self(batch, self.generator)
        target = batch["target"]
        batch_size = target.shape[0]
        terms = self.loss_fn(prediction, target)
        self.log("val/loss", terms["loss"], sync_dist=True, batch_size=batch_size)
        self.log("val/l1", terms["l1"], sync_dist=True, batch_size=batch_size)
        self.val_psnr(prediction, target)
        self.val_ssim(prediction, target)
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=batch_size)
        self.log("val/ssim", self.val_ssim, batch_size=batch_size)
        if self.val_lpips is not None:
            distance = self.val_lpips_net(prediction.float(), target.float(), normalize=True)
            self.val_lpips(distance.flatten())
            self.log("val/lpips", self.val_lpips, batch_size=batch_size)
        if batch_idx == 0 and self.global_rank == 0:
            n = self.hparams.num_image_samples
            grid = comparison_grid(batch, prediction, n)
            log_image(self.loggers, "val/samples", grid, self.global_step, self.trainer)

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, betas=(0.9, 0.99)
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(self.hparams.warmup_steps, max(total // 10, 1))
        floor = self.hparams.min_lr_ratio

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(FROZEN_PREFIXES)]:
            del state[key]
        if self.contract is None:
            raise CheckpointError(
                "CASyncSystem has no generator contract to save (fps, mask, references): build "
                "it with its data, casync.train.build_system(cfg, datamodule)"
            )
        checkpoint["casync"] = self.contract.to_extras()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(FROZEN_PREFIXES):
                state.setdefault(key, value)
        if self.contract is None:  # resuming on data: the data's own contract stays
            extras = checkpoint.get("casync", {})
            self.contract = GeneratorContract.from_extras(extras, self.net.image_size)


def build_lpips(net: str, weights: str | None):
    """The LPIPS network for validation (`metrics.lpips`): None for "none", else its ImageNet
    backbone; missing weights raise the error that names `metrics.lpips_weights`, never a random
    backbone."""
    if net == "none":
        return None
    from casync.evaluation.image_metrics import LPIPSMetric

    return LPIPSMetric(net=net, weights=weights).model
