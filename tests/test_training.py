"""The training system end to end on a real cache (of tests/media/grid_s1_8s.mp4): every config
option, fast_dev_run, overfitting, checkpoints (weights_only), exact resume, init_from, W&B
offline, DDP."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from casync.contract import load_generator
from casync.train import CONFIG_DIR, build_system, train
from casync.training.loggers import build_loggers, finish_loggers
from casync.training.system import CASyncSystem

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(cache_root: Path, speaker: str, out: Path) -> list[str]:
    return [
        f"speaker.name={speaker}",
        f"paths.cache_dir={cache_root}",
        f"paths.output_dir={out}",
        f"paths.log_dir={out}/logs",
        "audio=mel",
        "model=casync_tiny",
        "trainer=cpu",
        "logger=csv",
        "loss.perceptual=none",
        "metrics.lpips=none",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "optim.warmup_steps=1",
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    return compose_config("train", overrides)


@pytest.fixture
def cfg_train(s1_cache, tmp_path) -> DictConfig:
    root, speaker = s1_cache
    return compose_train(tiny_overrides(root, speaker, tmp_path))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group", ["trainer", "logger", "callbacks", "experiment", "debug", "model", "data"]
)
def test_every_option_composes_and_instantiates(group, s1_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    root, speaker = s1_cache
    for option in group_options(group):
        extra = []
        if group == "data" and option == "multi_speaker":  # combine two speakers' caches
            second = tmp_path / "caches"
            if not second.exists():
                shutil.copytree(root, second)
                shutil.copytree(root / speaker, second / f"{speaker}_copy")
            extra = [f"paths.cache_dir={second}", f"data.speakers=[{speaker},{speaker}_copy]"]
        cfg = compose_train([*tiny_overrides(root, speaker, tmp_path), f"{group}={option}", *extra])
        with open_dict(cfg):  # no GPU here: instantiate GPU trainers on the CPU
            cfg.trainer.accelerator = "cpu"
            if cfg.trainer.get("devices") == -1:
                cfg.trainer.devices = 1
        if group == "trainer" or group == "experiment" or group == "debug":
            assert isinstance(instantiate(cfg.trainer), __import__("lightning").Trainer), option
        if group == "logger":
            loggers = build_loggers(cfg.logger)
            assert all(isinstance(lg, Logger) for lg in loggers), option
            finish_loggers(loggers)
        if group == "callbacks":
            callbacks = [instantiate(c) for c in cfg.callbacks.values()]
            assert all(isinstance(c, Callback) for c in callbacks), option
        if group in ("model", "experiment"):
            net = instantiate(cfg.model)
            assert net.audio_feature_dim == cfg.audio.feature_dim, option
        if group == "data":
            dm = instantiate(cfg.data, _convert_="all")
            assert dm.audio_meta["feature_dim"] == 80, option
            assert len(dm.sources) == len(cfg.data.speakers), option
        if group == "experiment" and cfg.loss.perceptual == "none":
            assert isinstance(build_system(cfg), CASyncSystem)


def test_audio_and_hparams_search_options_compose(s1_cache, tmp_path):
    root, speaker = s1_cache
    for option in group_options("audio"):
        cfg = compose_train([*tiny_overrides(root, speaker, tmp_path), f"audio={option}"])
        assert cfg.model.audio_feature_dim == cfg.audio.feature_dim
    for option in group_options("hparams_search"):
        overrides = [f"speaker.name={speaker}", f"hparams_search={option}"]
        cfg = compose_config("train", overrides, hydra=True)
        assert "optim.lr" in cfg.sweep.params, option
        assert next(iter(cfg.sweep.objectives)) == "best/val/sync/objective", option
        assert cfg.trainer.devices == 1  # sweeps are single-device trials
        assert cfg.data.test_fraction > 0  # trials are selected on validation, never on test


def test_perceptual_loss_without_weights_names_the_key(cfg_train):
    cfg_train.loss.perceptual = "vgg"
    cfg_train.loss.vgg_weights = "/nonexistent/vgg16.pth"
    with pytest.raises(RuntimeError, match="loss.perceptual=none"):
        build_system(cfg_train)


def test_perceptual_loss_from_a_local_weights_file(cfg_train, tmp_path):
    from torchvision.models import vgg16

    path = tmp_path / "vgg16.pth"
    torch.save(vgg16(weights=None).state_dict(), path)
    cfg_train.loss.perceptual = "vgg"
    cfg_train.loss.vgg_weights = str(path)
    system = build_system(cfg_train)
    x = torch.rand(2, 3, 160, 160)
    terms = system.loss_fn(x, x.flip(-1))
    assert terms["perceptual"] > 0
    assert terms["loss"] == pytest.approx(float(terms["l1"] + 0.1 * terms["perceptual"]), rel=1e-5)
    assert system.loss_fn(x, x)["perceptual"] == 0


def test_validation_lpips_needs_real_backbone_weights(cfg_train, tmp_path):
    from torchvision.models import alexnet

    cfg_train.metrics.lpips = "alex"
    cfg_train.metrics.lpips_weights = str(tmp_path / "missing.pth")
    with pytest.raises((RuntimeError, FileNotFoundError), match="lpips"):
        build_system(cfg_train)
    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    cfg_train.metrics.lpips_weights = str(tmp_path / "alex.pth")
    cfg_train.trainer.fast_dev_run = True
    assert math.isfinite(train(cfg_train)["val/lpips"])  # logged with the loaded backbone


def test_validation_lpips_error_names_the_training_keys(cfg_train, tmp_path, monkeypatch):
    """One LPIPS setting (conf/metrics/): the error names `metrics.*`, not evaluation's keys."""
    from casync.audio.frontend import MissingWeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    cfg_train.metrics.lpips = "squeeze"
    with pytest.raises(MissingWeightsError, match="metrics.lpips_weights=") as error:
        build_system(cfg_train)
    assert "evaluate." not in str(error.value).replace("evaluate.allow_random_backbone", "")


def test_fast_dev_run(cfg_train):
    cfg_train.trainer.fast_dev_run = True
    metrics = train(cfg_train)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/psnr"])


def test_audio_front_end_mismatch_is_a_clear_error(cfg_train, tmp_path):
    cfg = compose_train(
        [
            *tiny_overrides(Path(cfg_train.paths.cache_dir), cfg_train.speaker.name, tmp_path),
            "audio=hubert_base",
        ]
    )
    with pytest.raises(ValueError, match="re-run preprocessing"):
        train(cfg)


def test_overfitting_a_few_batches_drives_the_loss_down(cfg_train):
    cfg_train.trainer.max_steps = 60
    cfg_train.trainer.overfit_batches = 1
    cfg_train.trainer.limit_val_batches = 0
    cfg_train.data.augment = False
    cfg_train.optim.lr = 3e-3
    datamodule = instantiate(cfg_train.data, _convert_="all")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    system = build_system(cfg_train)
    with torch.no_grad():
        before = float(system.loss_fn(system(batch), batch["target"])["loss"])
    trainer = instantiate(cfg_train.trainer, logger=False, enable_checkpointing=False)
    one_batch = torch.utils.data.DataLoader([batch], batch_size=None)  # the same batch each step
    trainer.fit(system, train_dataloaders=one_batch)
    with torch.no_grad():
        after = float(system.loss_fn(system(batch), batch["target"])["loss"])
    assert after < 0.5 * before, (before, after)


class InterruptAfterStep(Callback):
    """Simulates a killed run: a KeyboardInterrupt once `step` optimizer steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise KeyboardInterrupt


def run_checkpointed(
    cfg: DictConfig, max_steps: int, ckpt_path: str | None = None, interrupt_at: int | None = None
) -> Path:
    """Epochs of 2 steps, validated and checkpointed at each epoch end."""
    cfg.trainer.max_steps = max_steps
    cfg.trainer.limit_train_batches = 2
    cfg.trainer.val_check_interval = 1.0
    cfg.trainer.check_val_every_n_epoch = 1
    cfg.ckpt_path = ckpt_path
    cfg.data.augment = False
    return train_until(cfg, interrupt_at)


def train_until(cfg: DictConfig, interrupt_at: int | None = None) -> Path:
    """Train `cfg`, killed (as a job would be) after `interrupt_at` steps when given -> the
    run's `last.ckpt`."""
    if interrupt_at is None:
        train(cfg)
    else:
        with open_dict(cfg):
            cfg.callbacks.interrupt = {
                "_target_": f"{__name__}.InterruptAfterStep",
                "step": interrupt_at,
            }
        with pytest.raises(SystemExit):  # Lightning exits on an interrupt, as a killed job would
            train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_checkpoint_load_and_exact_resume(s1_cache, tmp_path):
    root, speaker = s1_cache
    straight = compose_train(tiny_overrides(root, speaker, tmp_path / "straight"))
    straight_last = run_checkpointed(straight, max_steps=4)

    first = compose_train(tiny_overrides(root, speaker, tmp_path / "resumed"))
    first_last = run_checkpointed(first, max_steps=4, interrupt_at=2)  # killed after step 2
    checkpoint = torch.load(first_last, weights_only=True)
    assert checkpoint["global_step"] == 2 and checkpoint["optimizer_states"]
    assert not any(k.startswith("loss_fn.") for k in checkpoint["state_dict"])
    assert checkpoint["casync"]["reference"].shape == (160, 160, 3)

    loaded = CASyncSystem.load_from_checkpoint(first_last, weights_only=True)
    assert torch.equal(loaded.net.fusion.position, checkpoint["state_dict"]["net.fusion.position"])

    second = compose_train(tiny_overrides(root, speaker, tmp_path / "resumed2"))
    resumed_last = run_checkpointed(second, max_steps=4, ckpt_path=str(first_last))
    a = torch.load(straight_last, weights_only=True)
    b = torch.load(resumed_last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 4 and a["epoch"] == b["epoch"]
    assert a["lr_schedulers"] == b["lr_schedulers"]
    for key, value in a["state_dict"].items():  # the same weights as the uninterrupted run
        torch.testing.assert_close(b["state_dict"][key], value, msg=key)

    generator = load_generator(resumed_last)
    assert generator.audio_config["_target_"].endswith("MelFrontEnd")
    assert generator.reference is not None and generator.reference.dtype.name == "uint8"


def test_init_from_starts_from_pretrained_weights(s1_cache, tmp_path):
    root, speaker = s1_cache
    base = compose_train(tiny_overrides(root, speaker, tmp_path / "base"))
    base_last = run_checkpointed(base, max_steps=2)
    cfg = compose_train(
        [
            *tiny_overrides(root, speaker, tmp_path / "ft"),
            f"init_from={base_last}",
            "finetune.freeze=[face_encoder]",
        ]
    )
    system = build_system(cfg)
    from casync.train import load_init_weights

    load_init_weights(system, str(base_last))
    state = torch.load(base_last, weights_only=True)["state_dict"]
    for key, value in system.net.state_dict().items():
        assert torch.equal(value, state[f"net.{key}"]), key
    assert not any(p.requires_grad for p in system.net.face_encoder.parameters())
    mismatched = compose_train([*tiny_overrides(root, speaker, tmp_path / "bad"), "model=casync"])
    with pytest.raises(ValueError, match="does not fit this model"):
        load_init_weights(build_system(mismatched), str(base_last))


def test_wandb_logger_offline_writes_a_run(cfg_train, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose_train(
        [
            *tiny_overrides(
                Path(cfg_train.paths.cache_dir),
                cfg_train.speaker.name,
                Path(cfg_train.paths.output_dir),
            ),
            "logger=wandb",
        ]
    )
    train(cfg)
    runs = list(Path(cfg.paths.output_dir).glob("wandb/offline-run-*"))
    assert len(runs) == 1
    assert any(f.suffix == ".wandb" for f in runs[0].iterdir())


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_one_run_folder(s1_cache, tmp_path):
    root, speaker = s1_cache
    run_dir = tmp_path / "ddp_run"
    overrides = [
        o for o in tiny_overrides(root, speaker, tmp_path) if not o.startswith("paths.output_dir")
    ]
    command = [
        sys.executable,
        "-m",
        "casync.train",
        *overrides,
        "trainer=ddp_cpu",
        "trainer.max_steps=2",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "world_size=2" in result.stderr + result.stdout
        or "MEMBER: 2/2" in result.stderr + result.stdout
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    siblings = [
        p for p in tmp_path.iterdir() if p.is_dir() and p.name != "ddp_run" and p.name != "logs"
    ]
    assert siblings == [], siblings  # every rank wrote into the one run folder
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_experiment_values_override_the_base_config(tmp_path):
    cfg = compose_train(["experiment=demo_cpu", f"paths.output_dir={tmp_path}"])
    assert cfg.loss.perceptual == "none" and cfg.metrics.lpips == "none"
    assert cfg.optim.lr == 2.0e-3
    assert compose_train(["experiment=paper", f"paths.output_dir={tmp_path}"]).optim.ema_decay > 0
    sharper = compose_train(["experiment=finetune_cpu", f"paths.output_dir={tmp_path}"])
    assert sharper.loss.perceptual == "efficientnet_lite0" and sharper.trainer.max_steps == 2000
    assert sharper.loss.mouth_weight == cfg.loss.mouth_weight and sharper.optim.lr == 2.0e-3


@pytest.mark.slow
def test_multirun_over_speakers_writes_one_run_per_speaker(s1_cache, tmp_path):
    root, speaker = s1_cache
    caches = tmp_path / "caches"
    shutil.copytree(root, caches)
    shutil.copytree(root / speaker, caches / "bob")
    overrides = [
        o
        for o in tiny_overrides(caches, speaker, tmp_path)
        if not o.startswith(("paths.output_dir", "speaker.name"))
    ]
    command = [
        sys.executable,
        "-m",
        "casync.train",
        "-m",
        *overrides,
        f"speaker.name={speaker},bob",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(
        p.parent.parent.name for p in tmp_path.glob("logs/train/multirun/*/*/checkpoints/last.ckpt")
    )
    assert runs == [f"0_{speaker}", "1_bob"]


def test_ema_weights_are_averaged_shipped_and_grids_logged(s1_cache, tmp_path):
    root, speaker = s1_cache
    cfg = compose_train([*tiny_overrides(root, speaker, tmp_path), "optim.ema_decay=0.5"])
    last = run_checkpointed(cfg, max_steps=2)
    state = torch.load(last, weights_only=True)["state_dict"]
    key = "fusion.position"
    live, ema = state[f"net.{key}"], state[f"ema_net.{key}"]
    assert not torch.equal(live, ema)  # an average of the trajectory, not the live weights
    assert torch.equal(load_generator(last).net.state_dict()[key], ema)  # inference ships the EMA
    grids = list(tmp_path.glob("csv/*/images/val_samples_*.png"))
    assert grids and grids[0].stat().st_size > 10_000  # input | generated | target | reference


def test_bf16_mixed_precision_step(cfg_train):
    """The GPU recipe's precision (trainer=gpu: bf16-mixed) through the same system, on the CPU."""
    cfg_train.trainer.precision = "bf16-mixed"
    cfg_train.trainer.fast_dev_run = True
    metrics = train(cfg_train)
    assert 0 < metrics["train/loss"] < 1 and metrics["val/psnr"] > 0
