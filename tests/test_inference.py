"""Inference end to end on real media: a tiny CASync checkpoint drives grid_s1_8s.mp4 with
jfk_11s.flac. Output format, untouched pixels, ping-pong, streaming == batch with bounded latency,
held mouth in silence, and a clear error for each bad input."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import CLIP, compose_config

from casync.contract import CheckpointError, save_generator_checkpoint
from casync.face import NoFaceError
from casync.infer import infer
from casync.inference import Synthesizer, ping_pong, prepare_source
from casync.media import MediaError
from casync.media.audio import load_audio
from casync.media.video import iter_frames
from casync.media.writer import OutputNotWritableError
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}
SR = 16_000


def write_checkpoint(
    path: Path, model: dict = TINY, audio: dict = MEL, net_model: dict | None = None
):
    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**(net_model or model)), model, audio)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def track_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tracks")


@pytest.fixture(scope="module")
def paths(media_dir):
    return media_dir / CLIP, media_dir / "jfk_11s.flac"


@pytest.fixture(scope="module")
def synthesized(checkpoint, track_cache, paths, tmp_path_factory):
    """The full command's work: 11 s of speech over an 8 s video (so it ping-pongs)."""
    video, audio = paths
    output = tmp_path_factory.mktemp("out") / "s1_jfk.mp4"
    synth = Synthesizer.from_checkpoint(checkpoint, track_cache_dir=track_cache, progress=False)
    return synth.synthesize(video, audio, output)


@pytest.fixture(scope="module")
def source(paths, track_cache):
    return prepare_source(paths[0], 25.0, 160, 1.5, keep_frames=None, track_cache_dir=track_cache)


def test_output_has_audio_duration_source_fps_size_and_soundtrack(synthesized, paths):
    assert synthesized["frames"] == 275 and synthesized["source_frames"] == 200
    with av.open(synthesized["output"]) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and float(video.average_rate) == 25
        assert (video.codec_context.width, video.codec_context.height) == (256, 256)
        assert float(video.duration * video.time_base) == pytest.approx(11.0, abs=1 / 25)
        assert audio.codec_context.name == "aac" and audio.rate == 44_100  # source rate kept
        assert float(audio.duration * audio.time_base) == pytest.approx(11.0, abs=1 / 25)
        assert sum(1 for _ in container.decode(video=0)) == 275


def test_pixels_far_from_the_mouth_are_the_source_ping_ponged(synthesized, paths, source):
    video, _ = paths
    originals = list(iter_frames(video, 25.0))
    order = ping_pong(275, 200)
    alpha = np.ones((160, 160), np.float32)  # the whole crop square: generous
    with av.open(synthesized["output"]) as container:
        outputs = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    stack = np.stack(originals).astype(np.int16)
    for k in (0, 120, 199, 230, 274):  # forward, the turn, backward
        s = order[k]
        near = cv2.warpAffine(alpha, source.transforms[s], (256, 256), flags=cv2.WARP_INVERSE_MAP)
        far = cv2.dilate(near, np.ones((9, 9), np.uint8)) == 0
        error = np.abs(outputs[k].astype(int) - originals[s])[far]
        assert error.mean() < 3, f"frame {k}: not source frame {s} away from the mouth"
        # No other source frame fits better, but a neighbour: the head barely moves in 40 ms.
        errors = np.abs(stack[:, far] - outputs[k][far]).mean(axis=(1, 2))
        assert abs(int(errors.argmin()) - s) <= 1, f"frame {k} is source frame {errors.argmin()}"
    assert order[230] == 168 and order[199] == 199  # the schedule the test relies on


def test_render_leaves_pixels_outside_the_blend_bit_exact(checkpoint, source, paths):
    synth = Synthesizer.from_checkpoint(checkpoint, progress=False, batch_size=8)
    audio = load_audio(paths[1], SR)[: SR // 2]
    for rendered in synth.render([audio], source):
        frame = source.frames[rendered.source_index]
        reach = cv2.warpAffine(
            synth.blender.alpha, source.transforms[rendered.source_index], (256, 256),
            flags=cv2.WARP_INVERSE_MAP,
        )  # fmt: skip
        outside = cv2.dilate((reach > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
        assert np.array_equal(rendered.frame[outside], frame[outside])
        assert np.abs(rendered.frame[reach > 0.5].astype(int) - frame[reach > 0.5]).mean() > 1


def test_stream_equals_batch_and_has_bounded_latency(checkpoint, source, paths):
    audio = load_audio(paths[1], SR)[: int(1.6 * SR)]
    synth = Synthesizer.from_checkpoint(checkpoint, progress=False, batch_size=4)
    synth.source = source
    batch = [r.frame for r in synth.render([audio])]
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(1, 1500, 200))
    chunks = np.split(audio, cuts[cuts < len(audio)])
    streamed = list(synth.stream(chunks))
    assert len(streamed) == len(batch) == 40
    assert all(np.array_equal(a, b) for a, b in zip(streamed, batch, strict=True))

    # Latency: with batch_size=1, frame j leaves once the audio is ~115 ms past its centre.
    synth.batch_size = 1
    pushed = [0]

    def chunks_20ms():
        for start in range(0, len(audio), 320):
            pushed[0] = start + 320
            yield audio[start : start + 320]

    lag = []
    for j, _ in enumerate(synth.stream(chunks_20ms())):
        if pushed[0] < len(audio):  # frames released before the audio ended
            lag.append(pushed[0] / SR - (j + 0.5) / 25)
    assert len(lag) >= 34 and max(lag) <= 0.115 + 0.02


def test_silence_holds_one_still_mouth(checkpoint, source, paths):
    speech = load_audio(paths[1], SR)[SR // 2 :]  # jfk_11s opens with 0.1 s of near-silence
    audio = np.concatenate([speech[:SR], np.zeros(int(1.2 * SR), np.float32), speech[SR : 2 * SR]])
    synth = Synthesizer.from_checkpoint(checkpoint, progress=False, batch_size=8)
    rendered = list(synth.render([audio], source))
    silent = [r for r in rendered if r.silent]
    assert 20 <= len(silent) <= 30  # ~1.2 s minus the window's reach into the speech
    assert [r.index for r in silent] == list(range(silent[0].index, silent[-1].index + 1))
    assert all(np.array_equal(r.generated, silent[0].generated) for r in silent)  # held
    spoken = [r.generated for r in rendered[:20]]
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(spoken))  # speech moves


# -- bad inputs ----------------------------------------------------------------------------------
def infer_config(**values) -> object:
    names = {"audio": "driving_audio"}  # the tests' short name for the config's key
    overrides = [f"{names.get(k, k)}={v}" for k, v in values.items()]
    return compose_config("infer", [*overrides, "progress=false"])


@pytest.fixture
def good(checkpoint, paths, tmp_path, track_cache):
    return {
        "checkpoint": checkpoint,
        "video": paths[0],
        "audio": paths[1],
        "output": tmp_path / "out.mp4",
        "track_cache_dir": track_cache,
    }


def test_missing_and_unreadable_checkpoints(good, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        infer(infer_config(**{**good, "checkpoint": tmp_path / "nope.ckpt"}))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        infer(infer_config(**{**good, "checkpoint": junk}))


def test_incompatible_checkpoints_name_the_mismatch(good, tmp_path):
    mel40 = {**MEL, "n_mels": 40, "feature_dim": 40}
    front = write_checkpoint(tmp_path / "front.ckpt", audio=mel40)
    with pytest.raises(
        CheckpointError,
        match=r"MelFrontEnd .*'feature_dim': 80}.*'mel' features {'feature_dim': 40}",
    ):
        infer(infer_config(**{**good, "checkpoint": front}))
    arch = write_checkpoint(tmp_path / "arch.ckpt", net_model={**TINY, "width_multiplier": 0.5})
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        infer(infer_config(**{**good, "checkpoint": arch}))


def test_video_without_a_face(good, tmp_path):
    from casync.media.writer import VideoWriter

    wall = tmp_path / "wall.mp4"
    with VideoWriter(wall, 25, 128, 96) as writer:
        for i in range(10):
            writer.write(np.full((96, 128, 3), 60 + i, np.uint8))
    with pytest.raises(NoFaceError, match=f"{wall}: no face found in any frame"):  # one type
        infer(infer_config(**{**good, "video": wall}))


def test_unreadable_audio_and_unwritable_output(good, tmp_path):
    text = tmp_path / "speech.wav"
    text.write_text("this is not audio")
    with pytest.raises(MediaError, match="speech.wav"):
        infer(infer_config(**{**good, "audio": text}))
    with pytest.raises(OutputNotWritableError, match="does not exist"):
        infer(infer_config(**{**good, "output": tmp_path / "missing" / "out.mp4"}))


@pytest.mark.slow
def test_cli_reports_a_bad_input_without_a_traceback(good, tmp_path):
    command = [
        sys.executable, "-m", "casync.infer", f"checkpoint={tmp_path / 'nope.ckpt'}",
        f"video={good['video']}", f"driving_audio={good['audio']}", f"output={good['output']}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "nope.ckpt' does not exist" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
