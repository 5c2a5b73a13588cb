"""`python -m casync.demo`: every step on a trimmed input (quick mode), the files it promises,
its plain verdict, and its handling of paths and inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import CLIP

from casync.demo import compose_config, demo, quoted
from casync.inference import ping_pong
from casync.media import MediaFileNotFoundError
from casync.media.side_by_side import source_schedule
from casync.media.writer import VideoWriter

REPO = Path(__file__).resolve().parents[1]


def streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "video": video.codec_context.name,
            "size": (video.codec_context.width, video.codec_context.height),
            "frames": frames,
            "audio": [s.codec_context.name for s in container.streams.audio],
        }


@pytest.mark.slow
def test_quick_demo_runs_every_step_and_says_what_it_found(media_dir, tmp_path):
    video = Path(shutil.copy(media_dir / CLIP, tmp_path / "my clip.mp4"))
    out = tmp_path / "demo"
    env = {**os.environ, "VIDEO": str(video), "AUDIO": str(media_dir / "jfk_11s.flac")}
    result = subprocess.run(
        [sys.executable, "-m", "casync.demo", "demo.quick=true", f"output_dir={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["quick"] and summary["inputs"]["video"].endswith("my clip_trimmed.mp4")
    lipsync = streams(out / "lipsync.mp4")
    assert lipsync == {"video": "h264", "size": (256, 256), "frames": 50, "audio": ["aac"]}
    side = streams(out / "side_by_side.mp4")
    assert side == {"video": "h264", "size": (512, 256), "frames": 50, "audio": ["aac"]}
    meta = json.loads((out / "cache" / "demo" / "meta.json").read_text())
    assert meta["sources"][0]["n_frames"] == 100  # 4 s trimmed: 75 train/gap, 25 held out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"]["frames"] == 25
    assert set(metrics["methods"]) == {"casync", "still_mouth", "real"}
    assert "| still-mouth baseline |" in (out / "metrics.md").read_text()
    assert (out / "mouth_opening.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "train" / "checkpoints" / "last.ckpt").is_file()

    verdict = summary["verdict"]
    beats = "CASync BEATS" if verdict["beats_still_mouth_lmd"] else "CASync does NOT beat"
    shift = "POSITIVE" if verdict["positive_shift_margin"] else "NOT positive"
    assert beats in result.stdout and shift in result.stdout and "Quick mode" in result.stdout
    evidence = summary["metrics"]["shift_evidence"]
    assert (
        f"90 % intervals (block bootstrap over those frames): {evidence.upper()}" in result.stdout
    )
    for path in summary["files"].values():
        assert path in result.stdout and Path(path).is_file()


def test_missing_video_is_named_with_the_fix(tmp_path):
    cfg = compose_config(
        "demo", [f"video={tmp_path / 'nope.mp4'}", f"output_dir={tmp_path / 'out'}"]
    )
    with pytest.raises(MediaFileNotFoundError, match=r"nope\.mp4: no such video file.*VIDEO="):
        demo(cfg)
    assert not (tmp_path / "out").exists()  # nothing is written before the inputs are checked


def test_default_media_are_the_carried_sample_and_env_overrides_them(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDEO", raising=False)
    monkeypatch.delenv("AUDIO", raising=False)
    monkeypatch.setenv("CASYNC_SAMPLE_DIR", str(tmp_path / "nowhere"))  # not needed any more
    cfg = compose_config("demo", [])
    assert Path(cfg.video).resolve() == REPO / "assets" / "grid_s1_sample.mp4"
    assert Path(cfg.driving_audio).resolve() == REPO / "assets" / "grid_s1_drive.flac"
    assert Path(cfg.video).is_file() and Path(cfg.driving_audio).is_file()
    monkeypatch.setenv("AUDIO", "/speech/other.wav")
    assert compose_config("demo", []).driving_audio == "/speech/other.wav"
    assert cfg.output_dir.endswith("outputs/demo") and not cfg.demo.quick


def test_documented_overrides_compose(tmp_path):
    """`python -m casync.demo video=x.mp4 driving_audio=y.wav` as the README writes it."""
    cfg = compose_config("demo", ["video=/clips/x.mp4", "driving_audio=/speech/y.wav"])
    assert (cfg.video, cfg.driving_audio) == ("/clips/x.mp4", "/speech/y.wav")


def test_paths_with_commas_spaces_and_quotes_survive_overrides(tmp_path):
    odd = tmp_path / "a, b=c 'd'.mp4"
    cfg = compose_config("preprocess", ["speaker=aoc", f"speaker.videos=[{quoted(odd)}]"])
    assert list(cfg.speaker.videos) == [str(odd)]


def test_source_schedule_ping_pongs_like_the_synthesizer(tmp_path):
    levels = np.arange(5) * 50
    video = tmp_path / "five.mp4"
    with VideoWriter(video, 25.0, 32, 32) as writer:
        for level in levels:
            writer.write(np.full((32, 32, 3), level, np.uint8))
    for n_out in (3, 12):  # shorter than the source (streamed) and longer (ping-pong)
        shown = [int(round(f.mean())) for f in source_schedule(video, n_out, 25.0)]
        expected = levels[ping_pong(n_out, len(levels))]
        np.testing.assert_allclose(shown, expected, atol=3)
