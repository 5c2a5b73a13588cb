"""`python -m casync.infer checkpoint=... video=... audio=... output=out.mp4`: compose
conf/infer.yaml, then `infer(cfg)`, which writes the lip-synced MP4 and returns a summary."""

from __future__ import annotations

import os

# The pipeline overlaps decoding, generation and x264 threads on few cores: spinning OpenMP
# workers would steal those cores (5x slower on a busy 2-core box). Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
REQUIRED = ("checkpoint", "video", "driving_audio", "output")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def infer(cfg: DictConfig) -> dict:
    """Lip-sync `cfg.video` to `cfg.audio` with `cfg.checkpoint`; write `cfg.output`.

    Returns {"output", "frames", "fps", "duration_s", "fps_achieved", ...}. Raises
    CheckpointError, MediaError, NoFaceError or OutputNotWritableError (all ValueErrors) with a
    message naming the bad input."""
    from casync.inference import Synthesizer
    from casync.media.writer import check_writable

    missing = [k.replace("driving_", "") for k in REQUIRED if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(
            f"missing {', '.join(missing)}: python -m casync.infer checkpoint=run.ckpt "
            "video=speaker.mp4 audio=speech.wav output=out.mp4"
        )
    check_writable(cfg.output)  # before minutes of work, not after
    synthesizer = Synthesizer.from_checkpoint(
        cfg.checkpoint,
        device=resolve_device(cfg.device),
        batch_size=cfg.batch_size,
        silence_db=cfg.silence_db,
        feather=cfg.blend.feather,
        color_match=cfg.blend.color_match,
        track_cache_dir=cfg.track_cache_dir,
        crf=cfg.encoder.crf,
        preset=cfg.encoder.preset,
        progress=cfg.progress,
    )
    return synthesizer.synthesize(cfg.video, cfg.driving_audio, cfg.output)


def summary_line(result: dict) -> str:
    return (
        f"wrote {result['output']}: {result['frames']} frames ({result['duration_s']:.2f} s at "
        f"{result['fps']:g} fps), {result['fps_achieved']:.1f} frames/s end to end "
        f"({result['render_fps']:.1f} after face tracking, {result['track_seconds']:.1f} s)"
    )


def rename_audio_argument(argv: list[str]) -> list[str]:
    """`audio=X` -> `driving_audio=X`: `audio` names the front-end config group, so Hydra would
    take `audio=speech.wav` for a group choice. The checkpoint fixes the front end here."""
    return ["driving_audio=" + a[len("audio=") :] if a.startswith("audio=") else a for a in argv]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    from casync.media import MediaError
    from casync.training.checkpoint import CheckpointError

    try:
        result = infer(cfg)
    except (ValueError, MediaError, CheckpointError, MissingMandatoryValue) as error:
        log.error("%s", error)  # a bad input, named in the message: no traceback
        sys.exit(1)
    print(summary_line(result))


if __name__ == "__main__":
    sys.argv = rename_audio_argument(sys.argv)
    main()
