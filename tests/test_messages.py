"""Bad inputs met at the edges of a command get one clear line (or a warning and carry on), not
Hydra's exception formatting, a raw library error or silence. Media: 2 s of the GRID
sample the repository carries (assets/)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from clips import sample_audio, sample_frames, write_clip
from hydra.core.global_hydra import GlobalHydra

import casync.infer
import casync.train
from casync.contract import GeneratorContract, SourceReference, save_generator_checkpoint
from casync.contract.checkpoint import check_resumable
from casync.face import stored_mask
from casync.inference import Synthesizer
from casync.inference.source import prepare_source, warn_if_upscaled
from casync.model import CASyncNet

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}


@pytest.fixture(scope="module")
def grid_clip(tmp_path_factory) -> Path:
    """2 s of the repository's GRID sample (the least preprocessing takes), a face ~100 px wide."""
    sample = ASSETS / "grid_s1_sample.mp4"
    frames, audio = sample_frames(sample, 50), sample_audio(sample, 2.0)
    return write_clip(tmp_path_factory.mktemp("clip") / "grid50.mp4", frames, audio=audio)


def run_command(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["casync", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("full_error", ["1", None])
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["speaker.name=../x"], "invalid speaker.name '../x'"),
        ([], "no speaker: name the one whose cache to use"),
    ],
)
def test_a_bad_run_folder_name_is_one_line(argv, says, full_error, tmp_path, monkeypatch, capsys):
    """As the Makefile runs commands (HYDRA_FULL_ERROR=1) and as a user does."""
    if full_error:
        monkeypatch.setenv("HYDRA_FULL_ERROR", full_error)
    else:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    code, output = run_command(
        casync.train.main, [*argv, f"paths.log_dir={tmp_path}"], monkeypatch, capsys
    )
    assert code == 1 and output.count("\n") == 1 and says in output
    assert not any(tmp_path.iterdir())  # nothing was written


def test_audio_given_for_the_speech_names_driving_audio(tmp_path, monkeypatch, capsys):
    code, output = run_command(
        casync.infer.main, ["audio=speech.wav", f"paths.log_dir={tmp_path}"], monkeypatch, capsys
    )
    assert code == 1 and output.count("\n") == 1
    assert "driving_audio=FILE" in output and "+audio" not in output


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ({"batch_size": 0}, "batch_size=0: frames per generator call, must be >= 1"),
        ({"preset": "turbo"}, "encoder.preset='turbo' is not an x264 preset: one of ultrafast"),
    ],
)
def test_bad_synthesis_settings_name_their_key(tmp_path, option, says):
    save_generator_checkpoint(tmp_path / "m.ckpt", CASyncNet(**TINY), TINY, MEL)
    with pytest.raises(ValueError, match=says):
        Synthesizer.from_checkpoint(tmp_path / "m.ckpt", **option)


def test_an_unwritable_track_cache_is_warned_about_and_tracking_goes_on(
    grid_clip, tmp_path, caplog
):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="casync"):
        source = prepare_source(grid_clip, 25.0, 160, 1.5, track_cache_dir=blocker / "tracks")
    assert source.n_frames == 50 and source.face_found.all()
    assert "could not be written" in caplog.text and "carrying on without it" in caplog.text


def test_a_face_the_crop_enlarges_is_warned_about(grid_clip, caplog):
    source = prepare_source(grid_clip, 25.0, 160, 1.5)
    with caplog.at_level(logging.WARNING, logger="casync"):
        warn_if_upscaled(source, 160)
    assert caplog.text == ""  # GRID's ~100 px face is not enlarged past 2x
    source.transforms = source.transforms * np.array([3.0, 3.0, 1.0], np.float32)  # 3x closer
    with caplog.at_level(logging.WARNING, logger="casync"):
        warn_if_upscaled(source, 160)
    assert "the face is small (the 160 px crop enlarges it" in caplog.text


def test_a_video_listed_twice_is_used_once_with_a_warning(grid_clip, compose, tmp_path, caplog):
    from casync.preprocess import preprocess

    cfg = compose("preprocess", [
        "speaker.name=bob", "audio=mel", f"paths.cache_dir={tmp_path}",
        f"speaker.videos=[{grid_clip},{grid_clip.parent / '.' / grid_clip.name}]",
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="casync"):
        summary = preprocess(cfg)
    assert list(summary["sources"]) == ["grid50"]
    assert "lists" in caplog.text and "2 times: it is used once" in caplog.text


def test_resuming_another_speakers_run_is_warned_about(tmp_path, caplog):
    contract = GeneratorContract(
        25.0, 160, references=[SourceReference("alice1", "a" * 64, np.zeros((160, 160, 3), np.uint8))],
        mask=stored_mask(160),
    )  # fmt: skip
    save_generator_checkpoint(tmp_path / "alice.ckpt", CASyncNet(**TINY), TINY, MEL, contract)
    with caplog.at_level(logging.WARNING, logger="casync"):
        check_resumable(tmp_path / "alice.ckpt", TINY, {"a" * 64})
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="casync"):
        check_resumable(tmp_path / "alice.ckpt", TINY, {"b" * 64})
    assert "trained on none of this run's videos" in caplog.text and "init_from" in caplog.text
