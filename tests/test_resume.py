"""Resuming from a mid-epoch `last.ckpt` (saved every step) continues exactly where the run
stopped: the same weights as an uninterrupted run, not only at epoch boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict
from test_training import compose_train, tiny_overrides

from casync.train import train


def run_every_step_checkpointed(
    cfg: DictConfig, max_steps: int, ckpt_path: str | None = None, interrupt_at: int | None = None
) -> Path:
    """Epochs of 4 steps, `last.ckpt` after every step, no validation: a kill mid-epoch leaves
    a mid-epoch checkpoint."""
    cfg.trainer.max_steps = max_steps
    cfg.trainer.limit_train_batches = 4
    cfg.trainer.limit_val_batches = 0
    cfg.ckpt_path = ckpt_path
    cfg.data.augment = True  # per-sample random choices must replay too
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.monitor = None
        cfg.callbacks.model_checkpoint.save_top_k = 0
        cfg.callbacks.model_checkpoint.every_n_train_steps = 1
        if interrupt_at is not None:
            cfg.callbacks.interrupt = {
                "_target_": "test_training.InterruptAfterStep",
                "step": interrupt_at,
            }
    if interrupt_at is None:
        train(cfg)
    else:
        with pytest.raises(SystemExit):
            train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_mid_epoch_resume_is_exact(aoc_cache, tmp_path):
    root, speaker = aoc_cache
    straight = compose_train(tiny_overrides(root, speaker, tmp_path / "straight"))
    straight_last = run_every_step_checkpointed(straight, max_steps=6)

    first = compose_train(tiny_overrides(root, speaker, tmp_path / "first"))
    first_last = run_every_step_checkpointed(first, max_steps=6, interrupt_at=3)  # mid epoch 0
    assert torch.load(first_last, weights_only=True)["global_step"] == 3

    second = compose_train(tiny_overrides(root, speaker, tmp_path / "second"))
    resumed_last = run_every_step_checkpointed(second, max_steps=6, ckpt_path=str(first_last))
    a = torch.load(straight_last, weights_only=True)
    b = torch.load(resumed_last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 6 and a["epoch"] == b["epoch"] == 1
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key, rtol=0, atol=1e-6)
