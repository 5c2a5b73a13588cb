"""Experiment loggers from `cfg.logger`, with W&B falling back to offline mode (and saying so)."""

from __future__ import annotations

import logging
import os

from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(wandb.api.api_key)
    except Exception:
        return False


def build_loggers(logger_cfg: DictConfig | None) -> list:
    loggers = []
    for name, cfg in (logger_cfg or {}).items():
        if "WandbLogger" in cfg.get("_target_", ""):
            offline = bool(cfg.get("offline")) or os.environ.get("WANDB_MODE") == "offline"
            if not offline and not wandb_has_credentials():
                log.warning(
                    "W&B: no API key found, logging offline (set WANDB_API_KEY to go online)"
                )
                offline = True
            logger = instantiate(cfg, offline=offline)
        else:
            logger = instantiate(cfg)
        log.info("logger %s: %s", name, type(logger).__name__)
        loggers.append(logger)
    return loggers


def finish_loggers(loggers: list) -> None:
    """Close W&B runs even after a failure (otherwise the next sweep trial reuses the run)."""
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        import wandb

        run_dir = wandb.run.dir if wandb.run is not None else None
        offline = wandb.run is not None and wandb.run.settings.mode == "offline"
        wandb.finish()
        if offline and run_dir:
            log.info(
                "W&B run saved offline; upload it with: wandb sync %s", os.path.dirname(run_dir)
            )
