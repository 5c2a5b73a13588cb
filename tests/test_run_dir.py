"""Run folders stay inside `paths.log_dir`: the names Hydra builds them from (`speaker.name`, the
job id in SLURM_JOB_ID / CASYNC_RUN_ID) are validated before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf.errors import InterpolationResolutionError

import casync.preprocess
import casync.train
from casync.run_dir import dirname


def run_entry(main, overrides: list[str], monkeypatch, capsys) -> str:
    """Run an entry point's `@hydra.main` in this process, which must fail -> its error message
    (Hydra prints it and exits, or raises it where HYDRA_FULL_ERROR is set)."""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["casync", *overrides])
    try:
        main()
    except SystemExit as exit_info:
        assert exit_info.code != 0
        return capsys.readouterr().err
    except InterpolationResolutionError as error:
        return str(error)
    raise AssertionError("the entry point did not fail")


def written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("value", ["../../escaped", "a/b", ".hidden", "", "x" * 65])
def test_unsafe_names_are_refused_with_the_key(value):
    with pytest.raises(ValueError, match="invalid speaker.name .*nothing was written"):
        dirname("speaker.name", value)


def test_timestamps_and_job_ids_pass():
    assert dirname("run id", "2026-12-01_23-36-18") == "2026-12-01_23-36-18"
    assert dirname("run id", "123456_7") == "123456_7"


def test_preprocess_with_a_path_in_speaker_name_writes_nothing(tmp_path, monkeypatch, capsys):
    log_dir = tmp_path / "a" / "b" / "logs"
    overrides = ["speaker=aoc", "speaker.name=../../escaped", "audio=mel"]
    overrides += [f"paths.log_dir={log_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    err = run_entry(casync.preprocess.main, overrides, monkeypatch, capsys)
    assert "invalid speaker.name '../../escaped'" in err, err
    assert written(tmp_path) == []  # no .hydra/ or log anywhere, inside log_dir or out


def test_train_with_a_path_in_the_run_id_writes_nothing(tmp_path, monkeypatch, capsys):
    log_dir = tmp_path / "a" / "b" / "logs"
    overrides = ["speaker=aoc", "audio=mel", "model=casync_tiny", "logger=csv"]
    overrides += [f"paths.log_dir={log_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    monkeypatch.setenv("CASYNC_RUN_ID", "../../../../x")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    err = run_entry(casync.train.main, overrides, monkeypatch, capsys)
    assert "invalid run id (SLURM_JOB_ID or CASYNC_RUN_ID) '../../../../x'" in err, err
    assert written(tmp_path) == []


@pytest.mark.parametrize("main", [casync.train.main, casync.preprocess.main])
def test_a_bare_command_asks_for_the_speaker_and_writes_nothing(
    main, tmp_path, monkeypatch, capsys
):
    """No sample clip by default: `python -m casync.train` alone names what is missing."""
    overrides = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    err = run_entry(main, overrides, monkeypatch, capsys)
    assert "no speaker" in err and "speaker.name=NAME" in err, err
    assert written(tmp_path) == []
