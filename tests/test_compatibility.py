"""The one compatibility check between a checkpoint, a cache and a front end
(`check_front_end` / `check_cache`): it compares the whole front-end description."""

from __future__ import annotations

import pytest
import torch

from casync.audio import WhisperFrontEnd
from casync.contract import (
    CheckpointError,
    GeneratorContract,
    check_cache,
    check_front_end,
    load_generator,
    save_generator_checkpoint,
)
from casync.face import stored_mask
from casync.inference.front_end import build_front_end
from casync.model import CASyncNet

WHISPER = {"_target_": "casync.audio.WhisperFrontEnd", "feature_dim": 384, "window": 10}
MODEL = {"width_multiplier": 0.25, "audio_feature_dim": 384, "audio_window": 10}


@pytest.fixture(scope="module")
def schedules() -> tuple[dict, dict]:
    """`describe()` of the default Whisper schedule (0.2 s chunks) and of another (0.4 s)."""
    return WhisperFrontEnd().describe(), WhisperFrontEnd(chunk_s=0.4).describe()


@pytest.fixture
def whisper_checkpoint(tmp_path, schedules):
    torch.manual_seed(0)
    path = tmp_path / "whisper.ckpt"
    contract = GeneratorContract(25.0, 160, front_end=schedules[0], mask=stored_mask(160))
    save_generator_checkpoint(path, CASyncNet(**MODEL), MODEL, WHISPER, contract)
    return path


def test_a_checkpoint_of_one_whisper_schedule_is_refused_on_a_cache_of_another(
    whisper_checkpoint, schedules
):
    trained, other = schedules
    generator = load_generator(whisper_checkpoint)
    assert generator.front_end_description == trained  # the contract carries it
    meta = {"speaker": "s1", "crop_size": 160, "audio": other}
    with pytest.raises(CheckpointError, match=r"'chunk_s': 0\.2.*'chunk_s': 0\.4.*preprocess"):
        check_cache(generator, meta, "cache/s1", str(whisper_checkpoint))
    check_cache(generator, {**meta, "audio": trained}, "cache/s1", str(whisper_checkpoint))
    with pytest.raises(CheckpointError, match="makes 160px crops.*holds 96px"):
        check_cache(generator, {**meta, "audio": trained, "crop_size": 96}, "c", "x.ckpt")


def test_a_cache_whose_mask_differs_from_the_checkpoints_is_refused(whisper_checkpoint, schedules):
    """Evaluation feeds the network the cache's masks: another region than the one the
    checkpoint was trained with would score inputs inference never makes."""
    generator = load_generator(whisper_checkpoint)
    meta = {"speaker": "s1", "crop_size": 160, "audio": schedules[0]}
    same = stored_mask(160)
    check_cache(generator, meta, "cache/s1", "w.ckpt", {"talk": same})
    other = same.copy()
    other[:8] = 1  # a taller region
    with pytest.raises(CheckpointError, match="source 'talk-2' has another region mask"):
        check_cache(generator, meta, "cache/s1", "w.ckpt", {"talk": same, "talk-2": other})


def test_a_run_configured_for_one_schedule_is_refused_on_a_cache_of_another(schedules):
    config = {**WHISPER, "chunk_s": 0.2, "context_s": 2.0, "lookahead_s": 0.2}
    check_front_end(config, schedules[0], "this run uses", "the cache", "re-run preprocessing")
    with pytest.raises(CheckpointError, match="this run uses WhisperFrontEnd.*'chunk_s'"):
        check_front_end(config, schedules[1], "this run uses", "the cache", "re-run")


def test_inference_refuses_other_whisper_weights_than_the_cache_was_made_with(
    whisper_checkpoint, schedules
):
    generator = load_generator(whisper_checkpoint)
    assert build_front_end(generator).describe() == schedules[0]
    generator.front_end_description = {**schedules[0], "model_sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="'model_sha256'"):
        build_front_end(generator, whisper_checkpoint)


def test_evaluation_and_inference_do_not_import_training():
    """The contract lives outside `training/`: no training <-> evaluation package cycle."""
    import subprocess
    import sys

    code = (
        "import sys, casync.contract, casync.evaluate, casync.evaluation.scoring, casync.infer, "
        "casync.inference.synthesizer; "
        "print(sorted(m for m in sys.modules if m.startswith('casync.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
