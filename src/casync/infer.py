"""`python -m casync.infer checkpoint=... video=... driving_audio=... output=out.mp4`: compose
conf/infer.yaml, then `infer(cfg)`, which writes the lip-synced MP4 and returns a summary."""

from __future__ import annotations

import os

# The pipeline overlaps decoding, generation and x264 threads on few cores: spinning OpenMP
# workers would steal those cores (5x slower on a busy 2-core box). Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
REQUIRED = ("checkpoint", "video", "driving_audio", "output")


def infer(cfg: DictConfig) -> dict:
    """Lip-sync `cfg.video` to `cfg.audio` with `cfg.checkpoint`; write `cfg.output`.

    Returns {"output", "frames", "fps", "duration_s", "fps_achieved", "faceless_frames",
    "reference", ...}. Raises CheckpointError, MediaError, NoFaceError or OutputNotWritableError
    (all ValueErrors) with a message naming the bad input; DiskFullError naming the file."""
    from casync.avatar import load_avatar
    from casync.contract import load_generator
    from casync.inference import Synthesizer
    from casync.media.writer import check_writable
    from casync.runtime import resolve_device

    required = [k for k in REQUIRED if not (k == "video" and cfg.get("avatar"))]
    missing = [k.replace("driving_", "") for k in required if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(
            f"missing {', '.join(missing)}: python -m casync.infer checkpoint=run.ckpt "
            "video=speaker.mp4 (or avatar=avatars/NAME) driving_audio=speech.wav output=out.mp4"
        )
    if not cfg.get("avatar"):
        check_input(cfg.video, "video", "a video of the checkpoint's speaker")
    check_input(cfg.driving_audio, "driving_audio", "the speech to lip-sync to")
    generator = load_generator(cfg.checkpoint)
    source = load_avatar(cfg.avatar, generator) if cfg.get("avatar") else cfg.video
    # Before minutes of work, not after; never over an input.
    check_writable(cfg.output, inputs=(getattr(source, "path", source), cfg.driving_audio))
    # A checkpoint made elsewhere names weights on that machine: `audio.<key>=` replaces them.
    audio = {k: v for k, v in cfg.audio.items() if v is not None}
    unknown = sorted(audio.keys() - generator.audio_config.keys())
    if unknown:
        raise ValueError(
            f"audio.{unknown[0]}=...: the checkpoint's audio front end "
            f"({generator.audio_config.get('_target_')}) has no such setting"
        )
    generator.audio_config.update(audio)
    synthesizer = Synthesizer(
        generator,
        device=resolve_device(cfg.device),
        batch_size=cfg.batch_size,
        silence_dbfs=cfg.silence_dbfs,
        feather=cfg.blend.feather,
        color_match=cfg.blend.color_match,
        track_cache_dir=cfg.track_cache_dir,
        crf=cfg.encoder.crf,
        preset=cfg.encoder.preset,
        progress=cfg.progress,
        precision=cfg.precision,
        face_cache_mb=cfg.face_cache_mb,
    )
    return synthesizer.synthesize(source, cfg.driving_audio, cfg.output)


def check_input(path: str, key: str, what: str) -> None:
    from casync.media import MediaFileNotFoundError

    if not Path(path).is_file():
        raise MediaFileNotFoundError(path, "file not found", f"Check {key}=... ({what}).")


def summary_line(result: dict) -> str:
    faceless = result.get("faceless_frames", 0)
    return (
        f"wrote {result['output']}: {result['frames']} frames ({result['duration_s']:.2f} s at "
        f"{result['fps']:g} fps), {result['fps_achieved']:.1f} frames/s end to end "
        f"({result['render_fps']:.1f} after face tracking, {result['track_seconds']:.1f} s); "
        f"reference: {result['reference']}"
        + (f"; {faceless} frames without a face shown unchanged" if faceless else "")
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    # SIGTERM unwinds like Ctrl-C, so the half-written output's temp file is removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with exit_on_bad_input():
        result = infer(cfg)
    print(summary_line(result))


main = command(
    hydra_main,
    hints={
        "audio": "the speech to lip-sync is driving_audio=FILE (audio.KEY=VALUE changes a setting of the checkpoint's front end)"
    },
)


if __name__ == "__main__":
    main()
