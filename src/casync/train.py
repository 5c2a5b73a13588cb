"""`python -m casync.train speaker=<name>`: compose the config, then `train(cfg)`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command
from casync.contract import (
    check_front_end,
    check_resumable,
    generator_contract,
    read_checkpoint,
)
from casync.training.loggers import build_loggers, finish_loggers
from casync.training.system import CASyncSystem

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def build_system(cfg: DictConfig, datamodule=None) -> CASyncSystem:
    """The LightningModule of `cfg`; with the `CASyncDataModule`, it also carries the data's
    generator contract (fps, smoothing, mask, references...) into its checkpoints (a system
    without one cannot save a checkpoint)."""
    system = CASyncSystem(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        audio=OmegaConf.to_container(cfg.audio, resolve=True),
        **OmegaConf.to_container(cfg.loss, resolve=True),
        **OmegaConf.to_container(cfg.optim, resolve=True),
        lpips=cfg.metrics.lpips,
        lpips_weights=cfg.metrics.get("lpips_weights"),
        num_image_samples=cfg.metrics.num_image_samples,
        freeze=list(cfg.finetune.freeze),
    )
    if datamodule is not None:
        system.contract = generator_contract(datamodule)
    return system


def load_init_weights(system: CASyncSystem, path: str) -> None:
    """`init_from`: copy network (and EMA) weights from a pretrained checkpoint, strictly."""
    state = read_checkpoint(path)["state_dict"]
    weights = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    own = system.net.state_dict()
    mismatched = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    if mismatched or set(weights) != set(own):
        raise ValueError(
            f"init_from='{path}' does not fit this model (model=..., audio=... must match the "
            f"base run): shape mismatches {mismatched[:3]}, missing "
            f"{sorted(set(own) - set(weights))[:3]}, unexpected {sorted(set(weights) - set(own))[:3]}"
        )
    system.net.load_state_dict(weights)
    if system.ema_net is not None:
        system.ema_net.load_state_dict(weights)
    log.info("initialised the network from %s", path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit CASync on the configured speaker(s); returns the final logged metrics, and the best
    checkpoint's score as `best/<monitor>` (e.g. best/val/sync/objective)."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    check_front_end(
        OmegaConf.to_container(cfg.audio, resolve=True),
        datamodule.audio_meta,
        "this run uses",
        f"the cache of {cfg.speaker.name}",
        "re-run preprocessing with the same audio=... option, or train with the audio option "
        "the cache was built with",
    )
    if cfg.ckpt_path:
        videos = {source.info["sha256"] for source in datamodule.sources}
        check_resumable(cfg.ckpt_path, OmegaConf.to_container(cfg.model, resolve=True), videos)
    system = build_system(cfg, datamodule)
    if cfg.init_from:
        load_init_weights(system, cfg.init_from)

    loggers = build_loggers(cfg.get("logger"))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        log.info("run folder: %s", cfg.paths.output_dir)
    try:
        with warnings.catch_warnings():  # the datamodule resumes mid-epoch exactly (state_dict)
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that")
            trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    finally:
        finish_loggers(loggers)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v)}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_path:
        log.info("best checkpoint: %s", checkpoint.best_model_path)
        if checkpoint.monitor and checkpoint.best_model_score is not None:
            metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        if cfg.get("sweep") is not None:
            raise ValueError(
                "hparams_search configures a sweep, which casync.sweep runs (resumable, shared "
                "by several workers): python -m casync.sweep hparams_search=... speaker=..."
            )
        train(cfg)


main = command(hydra_main)


if __name__ == "__main__":
    main()
