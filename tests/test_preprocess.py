"""`python -m casync.preprocess` end to end on copies of the sample videos: cache contents and
round trip, normalisation, resume after interruption, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clips import sample_audio, sample_frames, write_clip
from conftest import CLIP, compose_config

import casync.data.pipeline as pipeline
import casync.data.staging as staging
from casync.audio import MelFrontEnd, frame_windows
from casync.data.cache import CacheBusyError, CacheError, open_cache, speaker_lock
from casync.data.source_checks import TooShortError, TruncatedError
from casync.face import LIP_INDICES, cut_crop, transform_points
from casync.face.track import NoFaceError
from casync.inference.features import FrameFeatures
from casync.media import (
    MediaFileNotFoundError,
    NoAudioStreamError,
    NoVideoStreamError,
    SilentAudioError,
    UnreadableMediaError,
)
from casync.media.audio import SILENCE_DBFS, load_audio
from casync.media.video import iter_frames
from casync.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]


def run(cache: Path, videos: list[Path], speaker: str = "alice") -> dict:
    overrides = ["speaker=alice", f"speaker.name={speaker}", "audio=mel"]
    overrides += [f"paths.cache_dir={cache}", f"speaker.videos=[{','.join(map(str, videos))}]"]
    return preprocess(compose_config("preprocess", overrides))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Committed state: every file's size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


def test_cache_round_trip(s1_cache, media_dir):
    root, speaker = s1_cache
    cache = open_cache(root, speaker)
    meta = cache.meta
    assert (meta["format_version"], meta["fps"], meta["sample_rate"], meta["crop_size"]) == (
        3, 25.0, 16000, 160,
    )  # fmt: skip
    assert meta["audio"]["name"] == "mel" and len(meta["sources"][0]["sha256"]) == 64
    (source,) = cache.sources
    assert source.n_frames == 200 and source.crops.shape == (200, 160, 160, 3)
    assert source.crops.dtype == np.uint8 and isinstance(source.crops, np.memmap)
    assert source.masks.shape == (200, 160, 160) and source.transforms.shape == (200, 2, 3)
    assert source.mask.shape == (160, 160) and (source.dir / "mask.npy").stat().st_size < 30_000
    assert np.array_equal(source.masks[123], source.mask) and source.mask.any()  # stored once
    assert source.landmarks.shape == (200, 478, 2) and source.face_found.all()
    assert source.audio.shape == (200, 10, 80) and source.audio.dtype == np.float16
    # Crops are the stored transforms applied to the decoded frames; audio is the front end's.
    frames = list(iter_frames(media_dir / CLIP, 25.0))
    for k in (0, 99, 199):
        assert np.array_equal(source.crops[k], cut_crop(frames[k], source.transforms[k], 160))
    features = MelFrontEnd()(load_audio(media_dir / CLIP, 16_000))
    expected = frame_windows(features, 200, 25, 10).astype(np.float16)
    assert np.allclose(source.audio, expected, atol=1e-2)
    # Per-frame audio level, by the inference silence rule. GRID's pauses between sentences are
    # room noise at about -40 dBFS: no frame is silent at the default -45; at -35 the pauses are.
    audio = load_audio(media_dir / CLIP, 16_000)
    assert not (source.levels_dbfs <= SILENCE_DBFS).any()
    flags = FrameFeatures(MelFrontEnd(), 25.0, silence_dbfs=-35.0)
    flags.push(audio)
    flags.finish()
    _, silent = flags.take(0, 200)
    np.testing.assert_array_equal(source.levels_dbfs <= -35.0, silent)
    assert silent[44:59].all() and not silent[60:140].any() and silent.mean() < 0.25
    quality = source.quality
    assert quality["frames_without_face"] == 0 and quality["duration_used_s"] == 8.0
    assert quality["silent_frames"] == 0
    assert quality["audio_level_dbfs"] == pytest.approx(-16.7, abs=1)


def test_mouth_landmarks_fall_inside_the_stored_mask(s1_cache):
    source = open_cache(*s1_cache).sources[0]
    for k in range(0, 200, 7):
        lips = transform_points(source.landmarks[k][list(LIP_INDICES)], source.transforms[k])
        assert source.masks[k][lips[:, 1].astype(int), lips[:, 0].astype(int)].all(), k
        assert source.masks[k][:30].sum() == 0  # the nose stays visible


@pytest.mark.slow
def test_grid_and_30fps_source_normalise_to_25fps(tmp_path, media_dir):
    grid = Path(shutil.copy(media_dir / "grid_s_pwij3p.mpg", tmp_path))
    frames = sample_frames(grid)
    resampled = [frames[min(int(k * 25 / 30), 74)] for k in range(90)]  # 3 s at 30 fps
    fast = write_clip(tmp_path / "grid30.mp4", resampled, Fraction(30), sample_audio(grid))
    summary = run(tmp_path / "cache", [grid, fast])
    assert summary["sources"] == {"grid_s_pwij3p": "processed", "grid30": "processed"}
    cache = open_cache(tmp_path / "cache", "alice")
    assert [s.n_frames for s in cache.sources] == [75, 75]
    assert [s.info["frame_size"] for s in cache.sources] == [[360, 288], [360, 288]]
    assert [s.quality["source_fps"] for s in cache.sources] == [25.0, 30.0]
    assert all(s.face_found.all() for s in cache.sources)


def test_rerun_skips_and_a_changed_source_is_redone(s1_cache, tmp_path, media_dir):
    cache = tmp_path / "cache"
    shutil.copytree(s1_cache[0] / s1_cache[1], cache / "alice")
    clip = Path(shutil.copy(media_dir / CLIP, tmp_path))
    assert run(cache, [clip])["sources"] == {"grid_s1_8s": "skipped (unchanged)"}
    before = snapshot(cache / "alice")
    frames = sample_frames(clip, 60)
    write_clip(clip, frames, audio=sample_audio(clip, 2.4))  # same name, new content
    assert run(cache, [clip])["sources"] == {"grid_s1_8s": "processed"}
    assert open_cache(cache, "alice").sources[0].n_frames == 60
    crops = "sources/grid_s1_8s/crops.npy"
    assert snapshot(cache / "alice")[crops] != before[crops]


def test_interrupted_runs_never_read_as_valid_and_resume(tmp_path, media_dir, monkeypatch):
    grid = Path(shutil.copy(media_dir / "grid_s_pwij3p.mpg", tmp_path / "a.mpg"))
    clip = write_clip(tmp_path / "b.mp4", sample_frames(grid, 60), audio=sample_audio(grid, 2.4))
    cache = tmp_path / "cache"
    real = pipeline.process_source
    calls = []

    def interrupted_on_second(path, out, front_end, settings):
        calls.append(path.name)
        if len(calls) == 2:
            (out / "crops.npy").write_bytes(b"half written")
            raise KeyboardInterrupt
        return real(path, out, front_end, settings)

    monkeypatch.setattr(pipeline, "process_source", interrupted_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(cache, [grid, clip])
    with pytest.raises(CacheError, match="python -m casync.preprocess speaker=alice"):
        open_cache(cache, "alice")
    monkeypatch.setattr(pipeline, "process_source", real)
    summary = run(cache, [grid, clip])
    assert summary["sources"] == {"a": "reused (finished by an interrupted run)", "b": "processed"}
    assert [s.n_frames for s in open_cache(cache, "alice").sources] == [75, 60]

    # Killed while committing (sources swapped, meta.json not yet written): not valid either.
    write_clip(clip, sample_frames(grid, 55), audio=sample_audio(grid, 2.2))
    real_write = staging.write_json_atomic

    def no_meta(path, data):
        if path.name == "meta.json":
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(staging, "write_json_atomic", no_meta)
    with pytest.raises(KeyboardInterrupt):
        run(cache, [grid, clip])
    with pytest.raises(CacheError):
        open_cache(cache, "alice")
    monkeypatch.setattr(staging, "write_json_atomic", real_write)
    assert run(cache, [grid, clip])["sources"] == {
        "a": "skipped (unchanged)",
        "b": "skipped (unchanged)",
    }
    assert [s.n_frames for s in open_cache(cache, "alice").sources] == [75, 55]


def bad_inputs(tmp: Path, media_dir: Path) -> dict[str, tuple[Path, type, str]]:
    grid = media_dir / "grid_s_pwij3p.mpg"
    frames, audio = sample_frames(grid, 60), sample_audio(grid, 2.4)
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 this is not a video" * 50)
    return {
        "missing": (tmp / "missing.mp4", MediaFileNotFoundError, "file not found"),
        "unreadable": (garbage, UnreadableMediaError, "not a readable media file"),
        "no video": (Path(shutil.copy(media_dir / "jfk_11s.flac", tmp)),
                     NoVideoStreamError, "no video stream"),
        "no audio": (write_clip(tmp / "mute.mp4", frames), NoAudioStreamError, "no audio stream"),
        "silent": (write_clip(tmp / "silent.mp4", frames, audio=np.zeros_like(audio)),
                   SilentAudioError, "silent"),
        "no face": (write_clip(tmp / "wall.mp4", [np.full((96, 96, 3), 100, np.uint8)] * 60,
                               audio=audio), NoFaceError, "no face found in any frame"),
        "too short": (write_clip(tmp / "short.mp4", frames[:25], audio=audio[:16000]),
                      TooShortError, "only 1.00 s"),
    }  # fmt: skip


def test_bad_inputs_raise_clear_errors_and_leave_the_cache_as_it_was(s1_cache, tmp_path, media_dir):
    cache = tmp_path / "cache"
    shutil.copytree(s1_cache[0] / s1_cache[1], cache / "alice")
    clip = Path(shutil.copy(media_dir / CLIP, tmp_path))
    before = snapshot(cache / "alice")
    for case, (path, error, problem) in bad_inputs(tmp_path, media_dir).items():
        with pytest.raises(error, match=problem) as info:
            run(cache, [clip, path])
        assert path.name in str(info.value), case
        assert snapshot(cache / "alice") == before, case
        assert not (cache / "bob").exists()
        with pytest.raises(error):
            run(cache, [path], speaker="bob")  # a new speaker: nothing is left behind
        assert not (cache / "bob").exists(), case
    assert open_cache(cache, "alice").sources[0].n_frames == 200


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 80, "has space"])
def test_path_tricks_in_speaker_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="invalid speaker name"):
        run(tmp_path / "cache", [tmp_path / "a.mp4"], speaker=name)
    assert not (tmp_path / "cache").exists()


def test_source_ids_are_safe_and_unique():
    paths = [Path("/x/talk.mp4"), Path("/y/talk.mov"), Path("/z/../..weird name!.mkv")]
    assert pipeline.source_ids(paths) == ["talk", "talk-2", "weird_name_"]


@pytest.mark.slow
def test_command_line_with_overrides(tmp_path, media_dir):
    grid = shutil.copy(media_dir / "grid_s_pwij3p.mpg", tmp_path / "g.mpg")
    command = [
        sys.executable, "-m", "casync.preprocess", "speaker=grid", "audio=mel", "speaker.name=gina",
        f"speaker.videos=[{grid}]", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[g] 3.00 s used (75 frames" in result.stdout  # the quality report is printed
    meta = json.loads((tmp_path / "cache" / "gina" / "meta.json").read_text())
    assert meta["speaker"] == "gina" and meta["config"]["audio"]["_target_"].endswith("MelFrontEnd")


def test_faceless_frames_are_cached_counted_and_never_trained_on(tmp_path, media_dir):
    """Real footage has frames without a face (a cut, a hand): preprocessing keeps going, the
    quality report counts them, and the Dataset never serves them as targets."""
    from casync.data.dataset import CacheDataset

    source = media_dir / "grid_s_pwij3p.mpg"
    frames = sample_frames(source)
    hidden = range(30, 36)
    for j in hidden:
        frames[j] = np.zeros_like(frames[j])  # a black frame: no face
    video = write_clip(tmp_path / "cut.mp4", frames, audio=sample_audio(source))
    run(tmp_path / "cache", [video])
    cache = open_cache(tmp_path / "cache", "alice")
    source_cache = cache.sources[0]
    quality = json.loads((cache.root / "sources" / source_cache.id / "quality.json").read_text())
    assert quality["frames_without_face"] == len(hidden)
    assert quality["longest_gap_frames"] == len(hidden)
    assert not np.asarray(source_cache.face_found)[list(hidden)].any()
    dataset = CacheDataset(
        [source_cache], [range(source_cache.n_frames)], reference_min_gap=round(cache.meta["fps"])
    )
    served = {int(sample["frame"]) for sample in (dataset[i] for i in range(len(dataset)))}
    assert served == set(range(source_cache.n_frames)) - set(hidden)


def faststart_copy(source: Path, out: Path) -> Path:
    """Remux `source` with its index (moov) first, as web-optimised MP4s are: a truncated copy
    of such a file still opens and decodes up to where it was cut."""
    import av

    with (
        av.open(str(source)) as src,
        av.open(str(out), "w", options={"movflags": "faststart"}) as dst,
    ):
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    return out


def cut_inside(path: Path, kind: str, fraction: float) -> int:
    """A byte offset in the middle of the `kind` ("video" or "audio") packet nearest `fraction`
    of the file: where an interrupted copy of it ends."""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux() if p.size and p.stream.type == kind]
    target = fraction * path.stat().st_size
    pos, size = min(packets, key=lambda packet: abs(packet[0] + packet[1] / 2 - target))
    return pos + size // 2


@pytest.mark.parametrize("kind", ["video", "audio"])  # the cut inside a packet of either
def test_truncated_file_warns_or_is_refused(tmp_path, media_dir, kind):
    whole = faststart_copy(media_dir / CLIP, tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: cut_inside(whole, kind, 0.3)])  # about 2 of its 8 s
    assert len(load_audio(cut, 16_000)) > 1.5 * 16_000  # the sound before the cut decodes
    with pytest.warns(UserWarning, match=r"cut.mp4: only 2.\d\d s of video .* states 8.00 s"):
        run(tmp_path / "cache", [cut])
    (source,) = open_cache(tmp_path / "cache", "alice").sources
    assert source.quality["source_duration_s"] == 8.0
    assert source.quality["missing_video_s"] > 5.5
    overrides = ["speaker=alice", "audio=mel", f"paths.cache_dir={tmp_path / 'refused'}"]
    overrides += [f"speaker.videos=[{cut}]", "preprocess.on_truncated=refuse"]
    with pytest.raises(TruncatedError, match="probably truncated"):
        preprocess(compose_config("preprocess", overrides))


def test_a_second_preprocess_of_the_same_speaker_is_refused_while_one_runs(tmp_path, media_dir):
    """A real second process holds the speaker's lock, as a running preprocess does."""
    cache = tmp_path / "cache"
    holder = (
        "import sys\nfrom casync.data.cache import speaker_lock\n"
        f"with speaker_lock({str(cache)!r}, 'alice'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "held"
        grid = Path(shutil.copy(media_dir / "grid_s_pwij3p.mpg", tmp_path / "g.mpg"))
        with pytest.raises(
            CacheBusyError,
            match=rf"another preprocess of alice is running \(pid {process.pid}\)",
        ):
            run(cache, [grid])
        assert not (cache / "alice").exists()  # nothing of this run was written
    finally:
        process.communicate("", timeout=30)  # the holder exits and the kernel drops its lock
    with speaker_lock(cache, "alice"):  # free again: a finished run leaves nothing held
        pass
