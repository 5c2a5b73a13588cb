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
    if cfg.rest_mouth not in ("auto", "always", "never"):
        raise ValueError(f"rest_mouth={cfg.rest_mouth}: auto, always or never")
    torch.set_num_threads(cfg.threads)
    checkpoint, sources = cfg.checkpoint, [p for p in (cfg.video, cfg.avatar) if p is not None]
    if checkpoint is None and not sources:
        checkpoint, sources = cfg.builtin.checkpoint, [cfg.builtin.video]
        if not Path(checkpoint).is_file():
            raise ValueError(
                f"the built-in avatar's checkpoint {checkpoint} is missing: pass checkpoint= and "
                "video= (or avatar=), or make it as assets/live/README.md says"
            )
    if checkpoint is None or len(sources) != 1:
        raise ValueError(
            "checkpoint= goes with one of video= or avatar= (none: the built-in avatar)"
        )
    model = LiveModel.from_checkpoint(
        checkpoint,
        device=resolve_device(cfg.device),
        precision=cfg.precision,
        feather=cfg.blend.feather,
        color_match=cfg.blend.color_match,
        cache_dir=cfg.graph_cache_dir,
    )
    paths = {Path(sources[0]).stem: Path(sources[0])}
    if cfg.avatars_dir is not None:  # <id>.mp4 videos and <id>/ avatar folders, by id
        for path in sorted(Path(cfg.avatars_dir).iterdir()):
            if path.suffix == ".mp4" or (path / "avatar.json").is_file():
                paths[validate_name(path.stem, "avatar id")] = path
    idle = tuple(cfg.idle_range) if cfg.idle_range is not None else None
    avatars = {}
    for name, path in paths.items():
        load = LiveAvatar.from_folder if path.is_dir() else LiveAvatar.from_video
        avatars[name] = load(name, model.generator, path, idle)
    for avatar in avatars.values():
        if cfg.rest_mouth == "always" or (cfg.rest_mouth == "auto" and avatar.loop_talks):
            avatar.rest = model.rest_mouths(avatar)
            log.info("avatar %s: a resting mouth generated over its idle loop", avatar.name)
    warm_up(model, next(iter(avatars.values())), cfg)
    engine = Engine(model, cfg.max_sessions, cfg.silence_dbfs, cfg.max_batch)
    return LiveServer(
        engine,
        avatars,
        token=cfg.token,
        max_message_bytes=cfg.max_message_bytes,
        max_upload_bytes=cfg.max_upload_bytes,
        connect_timeout_s=cfg.connect_timeout_s,
        socket_grace_s=cfg.socket_grace_s,
        ice_servers=tuple(cfg.ice_servers),
    )


def warm_up(model, avatar, cfg: DictConfig) -> None:
    """One full batch before the first session (int8 calibrates on it; see `LiveModel.warm_up`)."""
    from casync.audio.frontend import SAMPLE_RATE
    from casync.media.audio import load_audio

    speech = load_audio(cfg.warm_up_audio, SAMPLE_RATE, False)[: 30 * SAMPLE_RATE]
    seconds = model.warm_up(avatar, speech, cfg.max_batch)
    log.info("warmed up on %s in %.1f s (%d mouths)", cfg.warm_up_audio, seconds, cfg.max_batch)


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
