"""A checkpoint is data, never code: crafted checkpoints that load with `weights_only=True` but
name callables in their audio config (the attacks Hydra's `instantiate` used to run) are refused
by `casync.infer` and `Synthesizer.from_checkpoint`, with a message naming the checkpoint and the
key, and nothing they name runs. Files read by other commands (a cache's meta.json) are checked
the same way."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import write_clip
from hydra.core.global_hydra import GlobalHydra

import casync.infer
from casync.audio.build import build_front_end
from casync.contract import CheckpointError, load_generator, save_generator_checkpoint
from casync.data.cache import CacheError, open_cache
from casync.inference import Synthesizer
from casync.model import CASyncNet
from casync.plain_settings import SettingsError

TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}


class _TouchOnLoad:
    """Unpickling this (weights_only=False) creates `marker`: the shell command of the attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def crafted_attacks(tmp_path: Path) -> dict[str, tuple[dict, Path]]:
    """{name: (audio config, the file that exists afterwards only if the attack ran)}."""
    pickled = tmp_path / "payload.pkl"
    pickled_marker = tmp_path / "pickle_ran"
    pickled.write_bytes(pickle.dumps(_TouchOnLoad(pickled_marker)))
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's data")
    hub = tmp_path / "hub"
    hub.mkdir()
    hub_marker = tmp_path / "hubconf_ran"
    (hub / "hubconf.py").write_text(f"open({str(hub_marker)!r}, 'w').close()\ndef x():\n    pass\n")
    nested = {"_target_": "torch.load", "f": str(pickled), "weights_only": False}
    return {
        # a nested _target_ inside an allowed front end's setting
        "nested torch.load": ({**MEL, "n_mels": nested}, pickled_marker),
        "builtins.open": ({"_target_": "builtins.open", "file": str(victim), "mode": "w"}, victim),
        "torch.hub.load": (
            {
                "_target_": "torch.hub.load",
                "repo_or_dir": str(hub),
                "model": "x",
                "source": "local",
            },
            hub_marker,
        ),
    }


def attack_ran(name: str, evidence: Path) -> bool:
    if name == "builtins.open":
        return evidence.read_text() != "the user's data"  # truncated
    return evidence.exists()


def crafted_checkpoint(tmp_path: Path, audio: dict) -> Path:
    path = tmp_path / "downloaded.ckpt"
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, audio)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["audio"] == audio  # it is data
    return path


@pytest.mark.parametrize("attack", ["nested torch.load", "builtins.open", "torch.hub.load"])
def test_a_crafted_checkpoint_is_refused_by_the_synthesizer_and_nothing_runs(tmp_path, attack):
    audio, evidence = crafted_attacks(tmp_path)[attack]
    checkpoint = crafted_checkpoint(tmp_path, audio)
    with pytest.raises(CheckpointError, match=r"checkpoint '.*downloaded\.ckpt'.*audio\.") as error:
        Synthesizer.from_checkpoint(checkpoint)
    key = "n_mels" if attack.startswith("nested") else "_target_"
    assert f"audio.{key}" in str(error.value)
    assert not attack_ran(attack, evidence)


def test_a_crafted_checkpoint_is_refused_by_infer_in_one_line(tmp_path, monkeypatch, capsys):
    """`python -m casync.infer` as a user runs it on a downloaded checkpoint."""
    audio, evidence = crafted_attacks(tmp_path)["nested torch.load"]
    checkpoint = crafted_checkpoint(tmp_path, audio)
    frames = [np.full((64, 64, 3), 100, np.uint8)] * 5
    video = write_clip(tmp_path / "me.mp4", frames)
    speech = write_clip(tmp_path / "speech.wav", None, audio=np.zeros(16_000, np.float32))
    GlobalHydra.instance().clear()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", [
        "casync.infer", f"checkpoint={checkpoint}", f"video={video}", f"driving_audio={speech}",
        f"output={tmp_path / 'out.mp4'}", f"paths.log_dir={tmp_path / 'logs'}",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        casync.infer.main()
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert exit_info.value.code == 1 and "Traceback" not in output
    assert "downloaded.ckpt" in output and "audio.n_mels" in output
    assert not evidence.exists() and not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"_target_": "casync.audio.frontend.os.system"}, "audio._target_"),
        ({"_target_": ["casync.audio.MelFrontEnd"]}, "audio._target_"),
        ({"n_fft": {"_target_": "builtins.open"}}, "audio.n_fft"),
        ({"n_mels": [80]}, "audio.n_mels"),
        ({"n_mels": True}, "audio.n_mels"),  # a bool is not an int setting
        ({"n_mels": 80.5}, "audio.n_mels"),
        ({"_recursive_": False}, "audio._recursive_"),
        ({"_args_": ["x"]}, "audio._args_"),
        ({"hook": "x"}, "audio.hook"),
    ],
)
def test_the_front_end_config_allows_only_casyncs_front_ends_with_plain_settings(change, named):
    with pytest.raises(SettingsError, match=rf"^checkpoint 'x.ckpt': {named}\b"):
        build_front_end({**MEL, **change}, "checkpoint 'x.ckpt'")


def test_the_allowed_front_ends_build_from_their_configs():
    """The allow-list is not a wall: each shipped front-end config (both spellings of the
    class) builds, ints are accepted where floats are declared, None where allowed."""
    mel = build_front_end({**MEL, "_target_": "casync.audio.frontend.MelFrontEnd"}, "test")
    assert mel.describe()["n_mels"] == 80
    whisper = build_front_end(
        {"_target_": "casync.audio.WhisperFrontEnd", "model_name_or_path": None,
         "feature_dim": 384, "chunk_s": 0.2, "context_s": 2, "lookahead_s": 0.2},
        "test",
    )  # fmt: skip
    assert whisper.describe()["context_s"] == 2.0


def test_a_checkpoint_whose_network_config_is_not_plain_is_refused(tmp_path):
    path = tmp_path / "odd.ckpt"
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["encoder_channels"] = {"_target_": "builtins.list"}
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"odd\.ckpt.*model\.encoder_channels"):
        load_generator(path)


def test_a_cache_whose_meta_json_names_a_path_outside_it_is_refused(s1_cache, tmp_path):
    """A source id in meta.json becomes a folder name: '../..' must not reach outside."""
    root, speaker = s1_cache
    copy = Path(shutil.copytree(root, tmp_path / "cache"))
    meta_path = copy / speaker / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["sources"][0]["id"] = "../../../elsewhere"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError, match=r"meta\.json lists invalid source id '\.\./"):
        open_cache(copy, speaker)
