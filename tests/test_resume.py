"""Resuming from a mid-epoch `last.ckpt` (saved every step) continues exactly where the run
stopped: the same weights as an uninterrupted run, not only at epoch boundaries; under DDP too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict
from test_training import compose_train, tiny_overrides, train_until

REPO = Path(__file__).resolve().parents[1]


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
    return train_until(cfg, interrupt_at)


def test_mid_epoch_resume_is_exact(s1_cache, tmp_path):
    root, speaker = s1_cache
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


def ddp_train(overrides: list[str], run_dir: Path) -> None:
    command = [sys.executable, "-m", "casync.train", *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_JOB_ID", None)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_mid_epoch_resume_is_exact_under_ddp(s1_cache, tmp_path):
    """Two CPU processes (gloo): resuming from the step-3 checkpoint of a 4-step epoch gives
    the weights of the uninterrupted run at step 6."""
    root, speaker = s1_cache
    overrides = [
        o for o in tiny_overrides(root, speaker, tmp_path) if not o.startswith("paths.output_dir")
    ]
    overrides += [
        "trainer=ddp_cpu", "trainer.max_steps=6", "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=0", "callbacks.model_checkpoint.monitor=null",
        "callbacks.model_checkpoint.save_top_k=-1",
        "+callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.model_checkpoint.filename='step{step}'",
        "callbacks.model_checkpoint.auto_insert_metric_name=false",
    ]  # fmt: skip
    ddp_train(overrides, tmp_path / "straight")
    step3 = tmp_path / "straight" / "checkpoints" / "step3.ckpt"
    assert torch.load(step3, weights_only=True)["global_step"] == 3
    ddp_train([*overrides, f"ckpt_path={step3}"], tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "step6.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "step6.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key, rtol=0, atol=1e-6)
