"""`python -m casync.live`: compose conf/live.yaml, then `live(cfg)`, which loads the model and
the avatars and serves the page until interrupted."""

from __future__ import annotations

import os

# Idle OpenMP workers must sleep, not spin: on 2 shared cores spinning made the tiny model 60x
# slower at batch 1 (measured, 2 threads). Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import asyncio
import contextlib
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")


def build(cfg: DictConfig):
    """The `LiveServer` that `cfg` describes (model loaded, avatars tracked)."""
    import torch

    from casync.data.cache import validate_name
    from casync.live.avatar import LiveAvatar
    from casync.live.engine import Engine, LiveModel
    from casync.live.server import LiveServer, check_exposure
    from casync.runtime import resolve_device

    check_exposure(cfg.host, cfg.token)  # before minutes of loading, not after
    torch.set_num_threads(cfg.threads)
    checkpoint, video = cfg.checkpoint, cfg.video
    if (checkpoint is None) != (video is None):
        raise ValueError("checkpoint= and video= go together (neither: the built-in avatar)")
    if checkpoint is None:
        checkpoint, video = cfg.builtin.checkpoint, cfg.builtin.video
        if not Path(checkpoint).is_file():
            raise ValueError(
                f"the built-in avatar's checkpoint {checkpoint} is missing: pass checkpoint= and "
                "video=, or make it as assets/live/README.md says"
            )
    model = LiveModel.from_checkpoint(
        checkpoint,
        device=resolve_device(cfg.device),
        precision=cfg.precision,
        feather=cfg.blend.feather,
        color_match=cfg.blend.color_match,
    )
    videos = {Path(video).stem: Path(video)}
    if cfg.avatars_dir is not None:
        for path in sorted(Path(cfg.avatars_dir).glob("*.mp4")):
            videos[validate_name(path.stem, "avatar id")] = path
    avatars = {}
    for name, path in videos.items():
        avatar = LiveAvatar.from_video(name, model.generator, path)
        if cfg.idle_range is not None:
            avatar.idle_range = (int(cfg.idle_range[0]), int(cfg.idle_range[1]))
        avatars[name] = avatar
    engine = Engine(model, cfg.max_sessions, cfg.silence_dbfs, cfg.max_batch)
    return LiveServer(
        engine,
        avatars,
        token=cfg.token,
        max_message_bytes=cfg.max_message_bytes,
        max_upload_bytes=cfg.max_upload_bytes,
        connect_timeout_s=cfg.connect_timeout_s,
    )


def live(cfg: DictConfig) -> None:
    """Serve until interrupted."""
    from casync.live.server import serve

    server = build(cfg)

    async def run() -> None:
        runner = await serve(server, cfg.host, cfg.port)
        log.info(
            "CASync Live on http://%s:%d/ (avatars: %s)",
            cfg.host,
            cfg.port,
            ", ".join(server.avatars),
        )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="live")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        live(cfg)


main = command(hydra_main)


if __name__ == "__main__":
    main()
