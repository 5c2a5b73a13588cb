"""H.264 + AAC writing: duration, rate, size, soundtrack trimmed to the video, atomic files."""

from __future__ import annotations

import av
import numpy as np
import pytest

from casync.media.writer import OutputNotWritableError, VideoWriter, check_writable


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_writes_h264_yuv420p_with_trimmed_aac_and_exact_duration(tmp_path):
    path = tmp_path / "clip.mp4"
    gradient = np.linspace(0, 255, 64, dtype=np.float32)
    frames = [np.uint8((gradient[None, :, None] + 8 * i) % 256).repeat(48, 0).repeat(3, 2)
              for i in range(37)]  # fmt: skip
    # 0.3 s more audio than video: the soundtrack must be cut to the 37 frames.
    with VideoWriter(path, 25, 64, 48, audio=tone(37 / 25 + 0.3), sample_rate=16_000) as writer:
        for frame in frames:
            writer.write(frame)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        assert float(video.average_rate) == 25
        assert float(video.duration * video.time_base) == pytest.approx(37 / 25, abs=1e-3)
        assert audio.codec_context.name == "aac"
        # AAC pads its last frame (1024 samples = 64 ms at 16 kHz); the muxed stream does not.
        assert float(audio.duration * audio.time_base) == pytest.approx(37 / 25, abs=0.005)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 37
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() < 3  # the frames, not junk
    assert not list(tmp_path.glob(".clip*")), "temporary file left behind"


def test_odd_size_is_trimmed_to_even_and_video_only_works(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, 25, 65, 49) as writer:
        for _ in range(3):
            writer.write(np.full((49, 65, 3), 128, np.uint8))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert not container.streams.audio


def test_failure_midway_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, 25, 32, 32) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_names_the_problem(tmp_path):
    with pytest.raises(OutputNotWritableError, match="does not exist"):
        check_writable(tmp_path / "no" / "such" / "dir" / "out.mp4")
    with pytest.raises(OutputNotWritableError, match=r"\.mp4"):
        check_writable(tmp_path / "out.avi")
    with pytest.raises(OutputNotWritableError, match="folder"):
        (tmp_path / "dir.mp4").mkdir()
        check_writable(tmp_path / "dir.mp4")
    assert check_writable(tmp_path / "fine.mp4") == tmp_path / "fine.mp4"
