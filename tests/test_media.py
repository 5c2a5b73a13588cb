"""Decoding real sample media: probing, constant-fps resampling by timestamps, 16 kHz mono audio,
and one specific error class per kind of bad file."""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest
from clips import write_clip
from conftest import CLIP

from casync.media import (
    MediaError,
    MediaFileNotFoundError,
    NoAudioStreamError,
    NoVideoStreamError,
    UnreadableMediaError,
)
from casync.media.audio import level_dbfs, load_audio
from casync.media.video import iter_frames, prefetch, probe_video


def test_probe_reads_both_sample_videos(media_dir):
    clip = probe_video(media_dir / CLIP)
    assert (clip.width, clip.height, clip.codec, clip.has_audio) == (256, 256, "mpeg4", True)
    assert clip.source_fps == pytest.approx(25) and clip.duration_s == pytest.approx(8.0)
    grid = probe_video(media_dir / "grid_s_pwij3p.mpg")
    assert (grid.width, grid.height, grid.codec) == (360, 288, "mpeg1video")


@pytest.mark.parametrize(("name", "n_frames"), [(CLIP, 200), ("grid_s_pwij3p.mpg", 75)])
def test_iter_frames_counts_decoded_frames_not_the_header(media_dir, name, n_frames):
    frames = list(iter_frames(media_dir / name, 25.0))  # grid's header says 0
    assert len(frames) == n_frames
    assert frames[0].dtype == np.uint8 and frames[0].ndim == 3 and frames[0].shape[2] == 3


def numbered_frames(n: int) -> list[np.ndarray]:
    """Frame i is a flat grey of level 8 * i, readable after lossless encoding."""
    return [np.full((32, 32, 3), 8 * i, np.uint8) for i in range(n)]


@pytest.mark.parametrize("source_fps", [Fraction(30), Fraction(2213, 100), Fraction(50)])
def test_constant_fps_by_timestamps(tmp_path, source_fps):
    n_source = 30
    path = write_clip(tmp_path / "n.nut", numbered_frames(n_source), source_fps, video_codec="ffv1")
    frames = list(iter_frames(path, fps=25))
    duration = n_source / float(source_fps)
    assert len(frames) == round(duration * 25)
    shown = [round(float(frame.mean()) / 8) for frame in frames]
    # Output frame k shows the source frame on screen at its centre time (k + 0.5) / 25.
    centres = [Fraction(2 * k + 1, 50) for k in range(len(frames))]
    expected = [min(int(centre * source_fps), n_source - 1) for centre in centres]
    assert shown == expected


def test_audio_is_16k_mono_float32_for_every_sample_format(media_dir):
    cases = {
        CLIP: 8.0,  # AAC 16 kHz stereo
        "grid_s_pwij3p.mpg": 2.95,  # MP2 44.1 kHz stereo
        "jfk_11s.flac": 11.0,  # FLAC 44.1 kHz stereo
        "librispeech_5703-47212-0000.ogg": 14.84,  # Vorbis 22.05 kHz mono
    }
    for name, seconds in cases.items():
        audio = load_audio(media_dir / name, 16_000)
        assert audio.dtype == np.float32 and audio.ndim == 1, name
        assert len(audio) / 16_000 == pytest.approx(seconds, abs=0.03), name
        assert -40 < level_dbfs(audio) < -10, name  # real speech, not silence or clipping


def test_resampling_keeps_pitch(tmp_path):
    rate = 44_100
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    path = write_clip(
        tmp_path / "tone.flac", None, audio=tone, sample_rate=rate, audio_codec="flac"
    )
    audio = load_audio(path, 16_000)
    assert len(audio) == 32_000
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / 16_000)[spectrum.argmax()] == pytest.approx(1000, abs=1)


def test_bad_files_raise_specific_errors_naming_the_file(tmp_path, media_dir):
    with pytest.raises(MediaFileNotFoundError, match="nope.mp4: file not found"):
        probe_video(tmp_path / "nope.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(UnreadableMediaError, match="garbage.mp4"):
        list(iter_frames(garbage, 25.0))
    flac = shutil.copy(media_dir / "jfk_11s.flac", tmp_path)
    with pytest.raises(NoVideoStreamError, match="jfk_11s.flac: no video stream"):
        probe_video(flac)
    mute = write_clip(tmp_path / "mute.mp4", numbered_frames(5))
    with pytest.raises(NoAudioStreamError, match="mute.mp4: no audio stream"):
        load_audio(mute, 16_000)
    for error in (MediaFileNotFoundError, UnreadableMediaError, NoVideoStreamError):
        assert issubclass(error, MediaError) and issubclass(error, ValueError)


def test_prefetch_reraises_producer_errors_and_stops_early():
    def items():
        yield 1
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        list(prefetch(items()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), maxsize=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    count = len(produced)
    assert count <= 3 + 2 + 2  # the producer stopped instead of running on
