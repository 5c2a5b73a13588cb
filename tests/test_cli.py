"""Every command ends on a bad input with its message and exit status 1, not a traceback."""

from __future__ import annotations

import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

import casync.evaluate
import casync.infer
import casync.preprocess
import casync.train


def run_main(main, overrides: list[str], monkeypatch, capsys) -> tuple[int, str]:
    GlobalHydra.instance().clear()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # as the Makefile runs commands: Hydra re-raises
    monkeypatch.setattr(sys, "argv", ["casync", *overrides])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize(
    ("main", "overrides", "named"),
    [
        (casync.preprocess.main, ["speaker.name=bob", "speaker.videos=[{missing}]", "audio=mel"],
         "missing.mp4"),
        (casync.train.main, ["speaker.name=nobody", "experiment=demo_cpu"], "nobody"),
        (casync.evaluate.main, ["speaker.name=bob", "checkpoint={missing}"], "missing.mp4"),
        (casync.infer.main, ["checkpoint={missing}", "video={missing}", "driving_audio={missing}",
                             "output={out}"], "missing.mp4"),
    ],
)  # fmt: skip
def test_bad_input_is_one_message_and_exit_1(main, overrides, named, tmp_path, monkeypatch, capsys):
    paths = {"missing": tmp_path / "missing.mp4", "out": tmp_path / "out.mp4"}
    base = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    code, output = run_main(
        main, [*base, *(o.format(**paths) for o in overrides)], monkeypatch, capsys
    )
    assert code == 1
    assert named in output and "Traceback" not in output
