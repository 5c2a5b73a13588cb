"""Hostile input and faults at inference (issue 13): inputs never overwritten, faceless frames
passed through, phone rotation kept, readable file modes, leftovers of killed runs removed, a
corrupt face-track cache rebuilt, and messages that name the file and give advice that works."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import sample_audio, sample_frames, write_clip
from conftest import CLIP
from test_inference import MEL, TINY, infer_config, write_checkpoint

from casync.atomic import DiskFullError, atomic_write_text, remove_stale_temps
from casync.contract import save_generator_checkpoint
from casync.hashing import sha256_file
from casync.infer import infer
from casync.inference import Synthesizer, prepare_source
from casync.inference.source import _cache_file, display_matrix
from casync.media import MediaFileNotFoundError
from casync.media.writer import OutputNotWritableError, VideoWriter
from casync.model import CASyncNet

SR = 16_000
SETTINGS = (25.0, 160, 1.5)  # fps, crop size, smoothing of a contract-less test checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def short_clip(media_dir, tmp_path_factory) -> Path:
    """The first 1.2 s of grid_s1_8s.mp4 (30 frames, near lossless), with its audio."""
    folder = tmp_path_factory.mktemp("clip")
    video = media_dir / CLIP
    frames, audio = sample_frames(video, 30), sample_audio(video, 1.2)
    return write_clip(folder / "s1_1s.mp4", frames, audio=audio)


@pytest.fixture(scope="module")
def speech(media_dir, tmp_path_factory) -> Path:
    """1 s of real speech as a wav."""
    path = tmp_path_factory.mktemp("speech") / "jfk_1s.wav"
    audio = sample_audio(media_dir / "jfk_11s.flac")[SR // 2 : SR // 2 + SR]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SR)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((audio[None] * 32767).astype(np.int16), "s16", "mono")
        frame.sample_rate = SR
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. never write over an input ---------------------------------------------------------------
def test_output_that_is_an_input_is_refused_and_the_input_kept(
    checkpoint, short_clip, speech, tmp_path
):
    video = Path(shutil.copy(short_clip, tmp_path / "talk.mp4"))
    driving = Path(shutil.copy(short_clip, tmp_path / "speech.mp4"))  # audio from a video
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    before = sha(video), sha(driving)
    base = {"checkpoint": checkpoint, "video": video, "audio": driving, "track_cache_dir": "null"}
    for output in (video, driving, link):
        with pytest.raises(OutputNotWritableError, match="is the input"):
            infer(infer_config(**{**base, "output": output}))
    hard = tmp_path / "hard.mp4"
    os.link(video, hard)
    with pytest.raises(OutputNotWritableError, match="is the input"):
        Synthesizer.from_checkpoint(checkpoint, progress=False).synthesize(hard, speech, video)
    assert (sha(video), sha(driving)) == before and link.resolve() == video


# -- 3. frames without a face pass through --------------------------------------------------------
def test_frames_without_a_face_pass_through_unchanged_and_are_counted(
    checkpoint, media_dir, speech, tmp_path
):
    frames = sample_frames(media_dir / CLIP, 30)
    wall = np.full_like(frames[0], 118)  # a cut to a bare wall: no face in frames 10-17
    frames[10:18] = [wall] * 8
    video = write_clip(tmp_path / "cut.mp4", frames)
    synth = Synthesizer.from_checkpoint(checkpoint, progress=False, batch_size=8)
    source = prepare_source(video, *SETTINGS, keep_frames=None)
    faceless = np.flatnonzero(~source.face_found)
    assert set(range(10, 18)) <= set(faceless) and len(faceless) < 12
    audio = sample_audio(speech)
    rendered = list(synth.render([audio], source))
    for r in rendered:
        if r.source_index in faceless:
            assert not r.face_found and np.array_equal(r.frame, source.frames[r.source_index])
        else:
            assert r.face_found and not np.array_equal(r.frame, source.frames[r.source_index])
    result = synth.synthesize(video, speech, tmp_path / "out.mp4")
    assert result["faceless_frames"] == len(faceless)


# -- 4. phone rotation ----------------------------------------------------------------------------
def write_phone_clip(path: Path, frames: list[np.ndarray], degrees: int) -> Path:
    """A clip stored sideways (as a phone records it) with a display matrix that turns it back."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stored = [np.ascontiguousarray(np.rot90(f, 1)) for f in frames]  # coded sideways
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        stream.set_display_rotation(degrees)
        for k, frame in enumerate(stored):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = k, Fraction(1, 25)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path


def test_rotated_phone_video_keeps_its_display_rotation(checkpoint, media_dir, speech, tmp_path):
    frames = sample_frames(media_dir / CLIP, 25)
    phone = write_phone_clip(tmp_path / "phone.mp4", frames, -90)
    matrix = display_matrix(phone)
    assert matrix is not None  # PyAV wrote the rotation
    synth = Synthesizer.from_checkpoint(checkpoint, progress=False)
    result = synth.synthesize(phone, speech, tmp_path / "out.mp4")
    assert display_matrix(Path(result["output"])) == matrix
    with av.open(result["output"]) as out, av.open(str(phone)) as src:
        first_out, first_src = next(out.decode(video=0)), next(src.decode(video=0))
        assert first_out.rotation == first_src.rotation == -90
    # The crop is cut upright from the sideways frames (the head's roll is ~90 degrees).
    source = prepare_source(phone, *SETTINGS)
    assert (
        abs(
            abs(np.degrees(np.arctan2(source.transforms[0, 0, 1], source.transforms[0, 0, 0]))) - 90
        )
        < 15
    )


# -- 9. file modes --------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_files_honour_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "meta.json", "{}")
        with VideoWriter(tmp_path / "out.mp4", 25, 32, 32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
        ckpt = tmp_path / "tiny.ckpt"
        torch.manual_seed(0)
        save_generator_checkpoint(ckpt, CASyncNet(**TINY), TINY, MEL)
    finally:
        os.umask(old)
    for path in (text, tmp_path / "out.mp4", ckpt):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


# -- 10. leftovers of killed runs -----------------------------------------------------------------
WRITE_FOREVER = """
import sys, numpy as np
from casync.media.writer import VideoWriter
writer = VideoWriter(sys.argv[1], 25, 64, 64)
while True:
    writer.write(np.zeros((64, 64, 3), np.uint8))
"""


def temps_of(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f".{output.name}.*"))


def test_a_killed_writers_temp_is_removed_by_the_next_run(tmp_path):
    output = tmp_path / "out.mp4"
    writer = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(output)])
    deadline = time.time() + 60
    while not temps_of(output) and time.time() < deadline:
        time.sleep(0.05)
    writer.kill()  # SIGKILL: no cleanup can run
    writer.wait()
    (stale,) = temps_of(output)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a temp whose writer is still running is not touched
        live = tmp_path / f".{output.name}.pid{alive.pid}.abc.mp4"
        live.write_bytes(b"in progress")
        with VideoWriter(output, 25, 64, 64) as next_run:
            next_run.write(np.zeros((64, 64, 3), np.uint8))
        assert not stale.exists() and live.exists() and output.is_file()
        old = time.time() - 2 * 24 * 3600  # ... unless it is days old (its pid reused)
        os.utime(live, (old, old))
        assert remove_stale_temps(output) == [live]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow
def test_sigterm_during_infer_leaves_no_temp(checkpoint, media_dir, tmp_path):
    output = tmp_path / "out.mp4"
    command = [
        sys.executable, "-m", "casync.infer", f"checkpoint={checkpoint}",
        f"video={media_dir / CLIP}",
        f"driving_audio={media_dir / 'jfk_11s.flac'}", f"output={output}",
        f"paths.log_dir={tmp_path / 'logs'}", "track_cache_dir=null", "progress=false",
    ]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not temps_of(output) and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert temps_of(output), run.communicate()[0][-2000:]
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 128 + signal.SIGTERM
    assert temps_of(output) == [] and not output.exists()


def test_unreadable_track_cache_is_rebuilt_with_a_warning(short_clip, tmp_path, caplog):
    entry = _cache_file(tmp_path, sha256_file(short_clip), *SETTINGS)
    fresh = prepare_source(short_clip, *SETTINGS, track_cache_dir=tmp_path)
    good = entry.read_bytes()
    for junk in (b"not a zip at all", good[: len(good) // 2]):  # garbage, truncated npz
        entry.write_bytes(junk)
        with caplog.at_level(logging.WARNING, logger="casync.inference.source"):
            source = prepare_source(short_clip, *SETTINGS, track_cache_dir=tmp_path)
        assert entry.name in caplog.text and "unreadable" in caplog.text
        np.testing.assert_array_equal(source.transforms, fresh.transforms)
        assert entry.read_bytes() != junk  # rebuilt
        caplog.clear()
    cached = prepare_source(short_clip, *SETTINGS, track_cache_dir=tmp_path)
    assert cached.track is None and cached.reference_frame == fresh.reference_frame  # a hit


def test_track_cache_key_includes_smoothing(short_clip, tmp_path):
    smooth = prepare_source(short_clip, 25.0, 160, 1.5, track_cache_dir=tmp_path)
    sharp = prepare_source(short_clip, 25.0, 160, 0.0, track_cache_dir=tmp_path)
    assert sharp.track is not None  # not the 1.5 entry
    assert np.abs(smooth.transforms - sharp.transforms).max() > 1e-3


# -- 12. messages ---------------------------------------------------------------------------------
def test_missing_inputs_name_the_infer_key_not_the_speaker_config(checkpoint, speech, tmp_path):
    good = {
        "checkpoint": checkpoint,
        "video": speech,
        "audio": speech,
        "output": tmp_path / "o.mp4",
    }
    for key, named in (("video", "Check video="), ("audio", "Check driving_audio=")):
        with pytest.raises(MediaFileNotFoundError) as error:
            infer(infer_config(**{**good, key: tmp_path / "missing.mp4"}))
        assert named in str(error.value) and "speaker config" not in str(error.value)


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError, match=r"meta\.json.*free space") as error:
        atomic_write_text(tmp_path / "meta.json", "{}")
    assert error.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    writer = VideoWriter(tmp_path / "out.mp4", 25, 32, 32)
    monkeypatch.setattr(writer, "_container", type("Full", (), {"mux": full, "close": full})())
    with pytest.raises(DiskFullError, match=r"out\.mp4"):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    writer._abort()
    assert list(tmp_path.iterdir()) == []


def tiny_hubert(folder: Path) -> Path:
    """A small randomly initialised HuBERT saved with `save_pretrained`: the real loading path."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    HubertModel(config).save_pretrained(folder)
    return folder


def test_moved_hubert_weights_can_be_pointed_at_with_the_errors_advice(
    short_clip, speech, tmp_path
):
    from casync.audio.frontend import MissingWeightsError

    weights = tiny_hubert(tmp_path / "machine_a" / "hubert")
    audio = {"_target_": "casync.audio.HubertFrontEnd", "model_name_or_path": str(weights),
             "feature_dim": 32, "window": 10, "layer": -1}  # fmt: skip
    model = {**TINY, "audio_feature_dim": 32}
    ckpt = write_checkpoint(tmp_path / "hubert.ckpt", model=model, audio=audio)
    local = Path(shutil.move(weights, tmp_path / "here" / "hubert"))  # another machine
    values = {"checkpoint": ckpt, "video": short_clip, "audio": speech, "track_cache_dir": "null"}
    with pytest.raises(MissingWeightsError, match="audio.model_name_or_path=") as error:
        infer(infer_config(**values, output=tmp_path / "a.mp4"))
    assert str(weights) in str(error.value)
    result = infer(
        infer_config(**values, output=tmp_path / "b.mp4", **{"audio.model_name_or_path": local})
    )
    assert Path(result["output"]).is_file() and result["frames"] == 25
