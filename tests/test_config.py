"""One config vocabulary: the keys every command shares have one name, one place and one default."""

from __future__ import annotations

from pathlib import Path

import pytest

from casync.media.audio import SILENCE_DBFS

CONF = Path(__file__).resolve().parents[1] / "conf"
ENTRY = {  # entry config -> overrides it needs to compose
    "train": ["speaker=aoc"],
    "preprocess": ["speaker=aoc"],
    "infer": [],
    "evaluate": ["speaker=aoc"],
    "profile": [],
    "demo": [],
}


def test_only_the_hydra_group_sets_run_folders():
    owners = [p.name for p in CONF.glob("*.yaml") if "\nhydra:" in "\n" + p.read_text()]
    assert owners == [], f"{owners} set hydra.* themselves instead of conf/hydra/default.yaml"


@pytest.mark.parametrize("name", sorted(ENTRY))
def test_every_command_gets_the_shared_run_folder(compose, name, monkeypatch):
    monkeypatch.setenv("CASYNC_RUN_ID", "job42")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cfg = compose(name, [*ENTRY[name], "paths.log_dir=/logs"], hydra=True)
    speaker = "aoc/" if "speaker" in cfg else ""
    assert cfg.hydra.run.dir == f"/logs/{name}/{speaker}job42"
    assert cfg.hydra.job.chdir is False


def test_sweep_subfolders_name_the_speaker(compose):
    cfg = compose("train", ["speaker=aoc", "hydra.job.num=3"], hydra=True)
    assert cfg.hydra.sweep.subdir == "3_aoc"


def test_training_and_evaluation_share_one_lpips_setting(compose):
    train, evaluate = compose("train", ENTRY["train"]), compose("evaluate", ENTRY["evaluate"])
    assert train.metrics.lpips == evaluate.metrics.lpips == "alex"
    assert train.metrics.lpips_weights is evaluate.metrics.lpips_weights is None
    assert "lpips_net" not in evaluate.evaluate and "lpips_weights" not in evaluate.evaluate


@pytest.mark.parametrize("name", ["infer", "evaluate", "profile"])
def test_device_and_batch_size_are_top_level_keys(compose, name):
    cfg = compose(name, ENTRY[name])
    assert (cfg.device, cfg.batch_size) == ("auto", 16)


def test_one_silence_threshold_with_the_code_default(compose):
    infer, evaluate = compose("infer"), compose("evaluate", ENTRY["evaluate"])
    assert infer.silence_dbfs == evaluate.silence_dbfs == SILENCE_DBFS
    assert "silence_db" not in infer and "silence_dbfs" not in evaluate.evaluate


@pytest.mark.parametrize("use_reference", [True, False])
def test_the_data_serves_a_reference_when_the_model_takes_one(compose, use_reference):
    cfg = compose("train", [*ENTRY["train"], f"model.use_reference={use_reference}"])
    assert cfg.data.use_reference is use_reference


def test_preprocess_takes_a_speaker_without_a_file(compose):
    cfg = compose("preprocess", ["speaker.name=bob", "speaker.videos=[a.mp4,b.mov]"], hydra=True)
    assert (cfg.speaker.name, list(cfg.speaker.videos)) == ("bob", ["a.mp4", "b.mov"])
    assert cfg.hydra.run.dir.split("/")[-2] == "bob"


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_train_and_evaluate_take_a_speaker_by_name(compose, name):
    cfg = compose(name, ["speaker.name=bob"], hydra=True)
    assert cfg.speaker.name == "bob" and cfg.hydra.run.dir.split("/")[-2] == "bob"
    if name == "train":
        assert list(cfg.data.speakers) == ["bob"]


def test_preprocess_without_videos_says_which_key(compose, tmp_path):
    from casync.preprocess import preprocess

    cfg = compose("preprocess", ["speaker.name=bob", "audio=mel", f"paths.cache_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"speaker.videos is empty.*speaker.name=bob"):
        preprocess(cfg)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENTRY))
def test_every_entry_module_resolves_its_run_folder(name, tmp_path):
    """`python -m casync.<name> --cfg all --resolve`: the module registers the resolvers."""
    import subprocess
    import sys

    speaker = ["speaker.name=bob"] if name in ("train", "preprocess", "evaluate") else []
    command = [sys.executable, "-m", f"casync.{name}", *speaker, f"paths.log_dir={tmp_path}"]
    result = subprocess.run(
        [*command, "--cfg", "all", "--resolve"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{tmp_path}/{name}/" in result.stdout


def test_one_resolve_device_for_every_command(monkeypatch):
    import torch

    from casync.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device=cuda:1 but no CUDA GPU is visible"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="device='gpu0': use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


def test_preprocessing_names_its_audio_floor_apart_from_the_silence_threshold(compose):
    cfg = compose("preprocess", ENTRY["preprocess"])
    assert cfg.preprocess.min_audio_dbfs == -60.0 and "silence_dbfs" not in cfg.preprocess
