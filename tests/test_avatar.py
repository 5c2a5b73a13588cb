"""An avatar is prepared once (one decode of the video) and then driven by any audio: its output
is the raw video's (generated crops bit for bit, whole frames within what the stored frames'
H.264 loses), and a stale avatar is refused, never used silently. Media: 4 s of the GRID sample
the repository carries (assets/)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from clips import sample_audio, sample_frames, write_clip
from hydra.core.global_hydra import GlobalHydra

import casync.avatar.__main__ as avatar_command
import casync.avatar.avatar as avatar_module
from casync.avatar import AvatarError, load_avatar, prepare_avatar
from casync.avatar.idle import choose_idle, cuts, user_idle
from casync.contract import load_generator, save_generator_checkpoint
from casync.inference import Synthesizer
from casync.inference.source import prepare_source
from casync.model import CASyncNet

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "grid_s1_sample.mp4"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
SR = 16_000


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 4 s GRID clip (100 frames, with its sound), a tiny checkpoint, and its avatar."""
    work = tmp_path_factory.mktemp("avatar")
    clip = write_clip(
        work / "clip.mp4", sample_frames(SAMPLE, 100), audio=sample_audio(SAMPLE, 4.0)
    )
    torch.manual_seed(0)
    save_generator_checkpoint(work / "m.ckpt", CASyncNet(**TINY), TINY, MEL)
    generator = load_generator(work / "m.ckpt")
    decodes = []
    original = avatar_module.iter_frames
    avatar_module.iter_frames = lambda *a, **k: decodes.append(a) or original(*a, **k)
    try:
        avatar = prepare_avatar(clip, generator, work / "avatars" / "grid")
    finally:
        avatar_module.iter_frames = original
    return work, clip, generator, avatar, decodes


def test_preparing_decodes_the_video_once_and_a_prepared_avatar_loads_at_once(job):
    _, _, generator, avatar, decodes = job
    assert len(decodes) == 1
    assert avatar.n_frames == 100 and avatar.face_found.all()
    assert sorted(p.name for p in avatar.folder.iterdir()) == [
        "avatar.json", "crops.index.npy", "crops.png", "face_found.npy", "frames.mp4",
        "opening.npy", "transforms.npy",
    ]  # fmt: skip
    assert not [p for p in avatar.folder.parent.iterdir() if p.name.startswith(".")]  # no temps
    started = time.perf_counter()
    loaded = load_avatar(avatar.folder, generator)
    assert time.perf_counter() - started < 0.5
    assert np.array_equal(loaded.transforms, avatar.transforms)
    first, last = loaded.frames[0], loaded.frames[99]  # random access, backward included
    assert first.shape == (288, 360, 3) and np.array_equal(loaded.frames[0], first)
    assert psnr(last, sample_frames(SAMPLE, 100)[99]) > 40


def rendered(synthesizer: Synthesizer, source, speech: np.ndarray) -> tuple[list, list]:
    frames, crops = [], []
    for out in synthesizer.render([speech], source, loops=True):
        frames.append(out.frame)
        crops.append(out.generated)
    return frames, crops


@pytest.mark.parametrize("seconds", [2.4, 6.0])  # within the clip, and ping-ponging past it
def test_an_avatars_output_is_the_raw_videos(job, seconds):
    work, clip, generator, avatar, _ = job
    speech = sample_audio(SAMPLE, 4.0 + seconds)[4 * SR :]  # speech the clip does not hold
    synthesizer = Synthesizer.from_checkpoint(work / "m.ckpt", progress=False, batch_size=8)
    raw = prepare_source(clip, generator.fps, generator.crop_size, generator.smoothing, None)
    raw_frames, raw_crops = rendered(synthesizer, raw, speech)
    avatar_frames, avatar_crops = rendered(synthesizer, avatar, speech)
    assert len(avatar_frames) == len(raw_frames) == round(seconds * 25)
    assert all(np.array_equal(a, b) for a, b in zip(avatar_crops, raw_crops, strict=True))
    quality = [psnr(a, b) for a, b in zip(avatar_frames, raw_frames, strict=True)]
    assert min(quality) >= 45, f"PSNR vs the raw video's output: min {min(quality):.1f} dB"


def test_infer_takes_an_avatar_instead_of_a_video(job, tmp_path):
    work, _, generator, avatar, _ = job
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, sample_audio(SAMPLE, 5.0)[4 * SR :], SR)
    synthesizer = Synthesizer.from_checkpoint(work / "m.ckpt", progress=False)
    result = synthesizer.synthesize(
        load_avatar(avatar.folder, generator), speech, tmp_path / "o.mp4"
    )
    assert result["frames"] == 25 and (tmp_path / "o.mp4").stat().st_size > 0


def test_a_stale_avatar_is_refused_with_a_message(job, tmp_path):
    _, clip, generator, avatar, _ = job
    torch.manual_seed(1)
    save_generator_checkpoint(tmp_path / "other.ckpt", CASyncNet(**TINY), TINY, MEL)
    with pytest.raises(
        AvatarError, match=r"prepared for checkpoint '.*m\.ckpt', not '.*other\.ckpt'"
    ):
        load_avatar(avatar.folder, load_generator(tmp_path / "other.ckpt"))
    meta = json.loads((avatar.folder / "avatar.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("transforms.npy", "face_found.npy", "opening.npy"):
        (copy / name).write_bytes((avatar.folder / name).read_bytes())
    with pytest.raises(AvatarError, match="no avatar.json; an interrupted preparation"):
        load_avatar(copy, generator)
    (copy / "avatar.json").write_text(json.dumps({**meta, "format": 0}))
    with pytest.raises(AvatarError, match="has format 0; this CASync reads format 3"):
        load_avatar(copy, generator)
    for name in ("crops.png", "crops.index.npy", "frames.mp4"):
        (copy / name).symlink_to(avatar.folder / name)
    for change in ({"n_frames": 10**9}, {"n_frames": "many"}, {"idle": {"start": 5, "stop": 2}}):
        (copy / "avatar.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(AvatarError, match="its files are not a CASync avatar's"):
            load_avatar(copy, generator)
    edited = Path(tmp_path / "edited.mp4")
    edited.write_bytes(clip.read_bytes())
    source = {**meta["source"], "path": str(edited)}
    (copy / "avatar.json").write_text(json.dumps({**meta, "source": source}))
    with open(edited, "r+b") as handle:  # the user re-exports the clip over itself
        handle.seek(os.path.getsize(edited) // 2)
        handle.write(b"\x00" * 64)
    with pytest.raises(AvatarError, match="edited.mp4' has been edited since it was prepared"):
        load_avatar(copy, generator)


def test_the_idle_loop_is_the_silent_still_closed_stretch():
    fps, n = 25.0, 250  # 10 s: speech everywhere but 6-9.5 s; a head turn at 2 s
    speech = np.ones(n, bool)
    speech[150:238] = False
    opening = np.full(n, 0.3)
    opening[150:238] = 0.02
    motion = np.full(n, 0.01)
    motion[50:60] = 0.2
    idle = choose_idle(speech, opening, motion, np.ones(n, bool), fps, seconds=3.0)
    assert idle.start >= 155 and idle.stop <= 233 and idle.stop - idle.start == 75
    assert idle.reason.startswith("the longest silent, closed-mouth stretch (3.0 s): speech in 0%")
    cut = np.zeros(n, bool)
    cut[200] = True  # an edit between two shots at 8 s: a loop across it would jump
    idle = choose_idle(speech, opening, motion, np.ones(n, bool), fps, seconds=3.0, cut=cut)
    assert idle.stop - idle.start == 38 and idle.start >= 155 and idle.stop <= 195
    assert cuts(np.r_[np.full(50, 1.0), 25.0, np.full(50, 1.2)]).nonzero()[0].tolist() == [50]
    speech[188:238] = True  # 1.5 s of silence left (6-7.5 s): a shorter loop, 0.2 s clear of speech
    idle = choose_idle(speech, opening, motion, np.ones(n, bool), fps, seconds=3.0)
    assert idle.start >= 155 and idle.stop <= 183 and idle.stop - idle.start == 25
    speech[:] = True  # talking throughout: the calmest 3 s, and the reason says so
    idle = choose_idle(speech, opening, motion, np.ones(n, bool), fps, seconds=3.0)
    assert idle.stop - idle.start == 75 and idle.reason.startswith("no silent, closed-mouth")
    assert not idle.quiet  # so the live server paints a resting mouth over it
    speech[150:238] = False
    no_face = np.ones(n, bool)
    no_face[160:170] = False
    idle = choose_idle(speech, opening, motion, no_face, fps, seconds=3.0)
    assert idle.start >= 170 or idle.stop <= 160  # never a loop with faceless frames
    assert user_idle((1.0, 2.0), n, fps).seconds == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"idle=\[9,12\]: seconds within the video"):
        user_idle((9.0, 12.0), n, fps)


def test_the_avatar_command_writes_the_folder_and_reports_the_idle_loop(
    job, tmp_path, monkeypatch, capsys
):
    work, clip, generator, _, _ = job
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", [
        "casync.avatar", f"checkpoint={work / 'm.ckpt'}", f"video={clip}",
        f"output={tmp_path / 'me'}", "idle=[1.0,2.5]", f"paths.log_dir={tmp_path / 'logs'}",
    ])  # fmt: skip
    avatar_command.main()
    output = capsys.readouterr().out
    assert "avatar ready" in output and "idle loop 1.00-2.52 s: set by the user" in output
    assert load_avatar(tmp_path / "me", generator).idle_range == (25, 63)


def test_a_video_is_made_into_its_avatar_once_and_later_runs_start_from_it(job, tmp_path, caplog):
    """What `casync.infer video=` does with its cache folder (`track_cache_dir`)."""
    work, clip, _, _, _ = job
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, sample_audio(SAMPLE, 5.0)[4 * SR :], SR)
    synthesizer = Synthesizer.from_checkpoint(
        work / "m.ckpt", progress=False, track_cache_dir=tmp_path / "cache"
    )
    tracked = []
    original = avatar_module.track_frames
    avatar_module.track_frames = lambda *a, **k: tracked.append(1) or original(*a, **k)
    try:
        first = synthesizer.synthesize(clip, speech, tmp_path / "first.mp4")
        second = synthesizer.synthesize(clip, speech, tmp_path / "second.mp4")
    finally:
        avatar_module.track_frames = original
    assert len(tracked) == 1 and len(list((tmp_path / "cache" / "avatars").iterdir())) == 1
    assert second["track_seconds"] < 0.5 < first["track_seconds"]
    assert (tmp_path / "first.mp4").read_bytes() == (tmp_path / "second.mp4").read_bytes()
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    synthesizer.track_cache_dir = blocked
    with caplog.at_level("WARNING", logger="casync"):
        third = synthesizer.synthesize(clip, speech, tmp_path / "third.mp4")
    assert third["frames"] == 25 and "tracking for this run only" in caplog.text
